"""`serve --processes N`: N service processes on one port, so one node uses all its cores.

One service process spends about a millisecond of its own CPU per task (gRPC, protobuf,
intake, scoring; `bench/service_cpu.py`), on one event loop: that caps it near a thousand
tasks/s whatever the node's core count. The supervisor here starts N ordinary `serve`
processes on the same address with SO_REUSEPORT; the kernel hands each new TCP connection
to one of them. Each process is a whole service (its own pool, queue, memo store, health,
drain), so nothing is shared across them but the port and the audit file.

* workers: `--workers` is the node's total, split as evenly as it goes (each gets >= 1);
  `--queue-limit` and `--caller-queue-limit` are per process (each has its own queue).
* metrics: process i serves on `--metrics-port` + i (each exports its own registry; sum
  them in the scraper); prometheus_client's multiprocess mode cannot export the pools'
  live figures, which are read at scrape time.
* audit: every process appends to the one file (`sandbox.audit` locks each append).
* sandboxes: process i's worker slots are numbered after those of processes 0..i-1
  (`--slot-offset`), so every sandbox on the node runs its jobs under a uid of its own, as
  in one process (RLIMIT_NPROC counts per uid: a shared uid would let one process's
  candidate starve another's of processes), and Docker containers carry a per-process
  instance label, so one process's start-up cleanup never removes a sibling's.
* drain: SIGTERM/SIGINT to the supervisor goes to every process, each drains as a single
  service does; the supervisor exits 0 when all of them exited 0.
* a process that dies while the node is not stopping is started again after a second (its
  connections' clients retry elsewhere or on reconnect); more than `_RESTARTS` deaths within
  `_RESTART_WINDOW_S` mean something is wrong with the node, so the supervisor drains the
  rest and exits 1 for its orchestrator to act on.
* if the supervisor itself dies, the kernel sends its processes SIGTERM (PR_SET_PDEATHSIG),
  so they drain instead of serving orphaned.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)
_RESTARTS = 5
_RESTART_WINDOW_S = 60.0
_RESTART_DELAY_S = 1.0
_PR_SET_PDEATHSIG = 1


def worker_shares(total: int, processes: int) -> list[int]:
    """`total` warm workers over `processes` processes, the first ones taking the remainder."""
    if processes < 1 or total < processes:
        raise ValueError(f"--workers ({total}) must be at least --processes ({processes})")
    base, extra = divmod(total, processes)
    return [base + (1 if index < extra else 0) for index in range(processes)]


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (never listening) SO_REUSEPORT socket on host:port: it fixes the port number
    when `port` is 0, fails early on a port taken by a socket without SO_REUSEPORT, and keeps
    the port ours between a process's death and its restart. A socket that does not listen
    is not in the kernel's group of listeners, so it is never handed a connection."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"cannot bind {host}:{port}: {exc}") from None
    return sock


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """`argv`: the `serve` command line as given; each process gets it with its own
    `--port`, `--workers`, `--metrics-port` and `--processes 1` appended (argparse keeps
    the last value of an option)."""

    def __init__(self, argv: Sequence[str], port: int, workers: Sequence[int], metrics_port: int) -> None:
        self.argv = list(argv)
        self.port = port
        self.workers = list(workers)
        self.metrics_port = metrics_port
        self.children: dict[int, tuple[int, subprocess.Popen[bytes]]] = {}  # pid -> (index, process)
        self.stopping = False
        self.deaths: list[float] = []

    def command(self, index: int) -> list[str]:
        metrics = self.metrics_port + index if self.metrics_port else 0
        overrides = ["--processes", "1", "--port", str(self.port), "--workers", str(self.workers[index])]
        overrides += ["--slot-offset", str(sum(self.workers[:index]))]
        return [sys.executable, "-m", "sandbox", *self.argv, *overrides, "--metrics-port", str(metrics)]

    def start(self, index: int) -> None:
        process = subprocess.Popen(self.command(index), preexec_fn=_die_with_parent)
        self.children[process.pid] = (index, process)
        log.info("process started", extra={"fields": {"index": index, "pid": process.pid, "port": self.port}})

    def _signal(self, signum: int, _frame: object) -> None:
        self.stopping = True
        for _, process in self.children.values():
            if process.returncode is None:
                process.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._signal)
        for index in range(len(self.workers)):
            self.start(index)
        failed = False
        while self.children:
            pid, status = os.wait()  # a signal runs _signal and the wait goes on (PEP 475)
            if pid not in self.children:
                continue
            index, process = self.children.pop(pid)
            process.returncode = code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                failed |= code != 0
                log.info("process exited", extra={"fields": {"index": index, "pid": pid, "code": code}})
                continue
            now = time.monotonic()
            self.deaths = [t for t in self.deaths if now - t < _RESTART_WINDOW_S] + [now]
            log.warning("process died", extra={"fields": {"index": index, "pid": pid, "code": code}})
            if len(self.deaths) > _RESTARTS:
                log.error("processes keep dying: stopping the node", extra={"fields": {"deaths": len(self.deaths)}})
                self._signal(signal.SIGTERM, None)
                failed = True
                continue
            time.sleep(_RESTART_DELAY_S)  # a signal here sets `stopping`: then no restart
            if not self.stopping:
                self.start(index)
        return 1 if failed else 0


def supervise(argv: Sequence[str], host: str, port: int, total_workers: int, processes: int, metrics_port: int) -> int:
    shares = worker_shares(total_workers, processes)
    if metrics_port and metrics_port + processes - 1 > 65535:
        raise SystemExit(f"--metrics-port {metrics_port} + {processes - 1} is past 65535")
    reserved = reserve_port(host, port)
    try:
        bound = int(reserved.getsockname()[1])
        log.info("supervising", extra={"fields": {"processes": processes, "port": bound, "workers": shares}})
        return Supervisor(argv, bound, shares, metrics_port).run()
    finally:
        reserved.close()
