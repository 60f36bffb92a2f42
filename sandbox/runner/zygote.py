"""The zygote: forks fresh candidate processes on the judge's request.

The runner forks the zygote *before* it reads a job's secret part (assert code that
holds expected values), so no candidate process ever has that in its memory, even
when the judge needs a new candidate after a crash or a timeout. The judge gets each
candidate's pipes as file descriptors passed over a Unix socket.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

import candidate


def _spawn(job: dict[str, Any], control: socket.socket) -> None:
    chan_judge, chan_cand = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            control.close()
            chan_judge.close()
            for fd in (out_r, err_r, in_w):
                os.close(fd)
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (in_r, out_w, err_w):
                os.close(fd)
            candidate.serve(job, chan_cand.fileno())
        finally:
            os._exit(0)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    chan_cand.close()
    socket.send_fds(control, [json.dumps({"pid": pid}).encode()],
                    [chan_judge.fileno(), out_r, err_r, in_w])
    chan_judge.close()
    for fd in (out_r, err_r, in_w):
        os.close(fd)


def serve(job: dict[str, Any], control: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            message = control.recv(256)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn":
            _spawn(job, control)
        elif request["op"] == "wait":
            try:
                _, status = os.waitpid(int(request["pid"]), 0)
            except ChildProcessError:
                status = -1
            control.send(json.dumps({"status": status}).encode())
