"""Forking candidate processes, and the zygote that does it for an isolated harness.

`spawn_candidate` is the one way a candidate process is made: fresh pipes for its
channel and stdio, a new process group, the caller's privilege drop, then the
candidate loop. The runner calls it directly for jobs without secrets. For jobs whose
tests run whole inside the sandbox (their expected values are in the harness's memory),
the runner forks a zygote *before* it reads the secret part and the harness asks the
zygote for candidates, receiving their pipes as file descriptors over a Unix socket.
So no candidate process is ever a fork of a process that held a test's answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import candidate


def spawn_candidate(job: dict[str, Any], enter: Callable[[set[int]], None]) -> tuple[int, list[int]]:
    """Fork a candidate; returns its pid and the parent's ends [channel, stdout, stderr, stdin]."""
    chan_parent, chan_child = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    in_r, in_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the zygote ignores it
            os.setpgid(0, 0)
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            enter({chan_child.fileno()})  # drops privileges, closes every other fd
            candidate.serve(job, chan_child.fileno())
        finally:
            os._exit(0)
    for fd in (in_r, out_w, err_w):
        os.close(fd)
    chan_child.close()
    return pid, [chan_parent.detach(), out_r, err_r, in_w]


def reap(pid: int) -> int:
    """Kill a candidate's process group and wait for it; its wait status (-1 if unknown)."""
    for kill in (os.killpg, os.kill):  # the candidate itself too: it may have left its group
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return -1


class DirectSpawner:
    """Candidates as children of the calling process (no secret is in its memory)."""

    def __init__(self, job: dict[str, Any], enter: Callable[[set[int]], None]) -> None:
        self.job = job
        self.enter = enter

    def spawn(self) -> tuple[int, list[int]]:
        return spawn_candidate(self.job, self.enter)

    def reap(self, pid: int) -> int:
        return reap(pid)


class SpawnError(Exception):
    """No candidate process could be made (the zygote is gone: the candidate killed it)."""


class ZygoteSpawner:
    """Candidates forked by the zygote at the other end of `control`.

    The zygote runs with the candidate's uid, so a candidate can kill it; that must
    end as a failure of that candidate, never as an error of ours.
    """

    def __init__(self, control: socket.socket) -> None:
        self.control = control

    def spawn(self) -> tuple[int, list[int]]:
        try:
            self.control.send(b'{"op":"spawn"}')
            message, fds, _, _ = socket.recv_fds(self.control, 256, 4)
            pid = int(json.loads(message)["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            raise SpawnError("the zygote is gone") from None
        if len(fds) != 4:
            raise SpawnError("the zygote sent no candidate")
        return pid, fds

    def reap(self, pid: int) -> int:
        for kill in (os.killpg, os.kill):  # same uid: no need to trust the zygote for this
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.control.send(json.dumps({"op": "reap", "pid": pid}).encode())
            return int(json.loads(self.control.recv(256))["status"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1


def serve(job: dict[str, Any], control: socket.socket) -> None:
    """The zygote's loop: spawn and reap candidates until the harness hangs up."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a candidate of the same uid may send it

    def enter(keep: set[int]) -> None:
        control.close()

    while True:
        try:
            message = control.recv(256)
        except OSError:
            return
        if not message:
            return
        request = json.loads(message)
        if request["op"] == "spawn":
            pid, fds = spawn_candidate(job, enter)
            socket.send_fds(control, [json.dumps({"pid": pid}).encode()], fds)
            for fd in fds:
                os.close(fd)
        elif request["op"] == "reap":
            control.send(json.dumps({"status": reap(int(request["pid"]))}).encode())
