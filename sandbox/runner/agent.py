"""The runner agent: a long-lived process inside one sandbox that runs jobs one at a time.

Started once per warm worker (by bubblewrap or inside a container), it reads jobs as
frames on stdin and answers each with a meta frame and a report frame on stdout. Jobs
without secrets it runs the test harness for itself, forking one candidate process (job
uid, rlimits) per job. Whole-mode jobs, whose test code holds expected values, get a zygote
forked before the secret is read and a separate non-dumpable harness. A job of a mode it
does not know is refused (`runner_error` in the meta): the service sent it, not a candidate.
After every job it kills every process that is not itself and wipes the job's files, so
nothing survives into the next.

Stdlib only: it must run on whatever Python the sandbox image has. The messages it reads
and writes are named in the wire (`messages`), which is mounted next to this directory.
"""

from __future__ import annotations

import gc
import glob
import json
import mmap
import os
import resource
import select
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "wire"))  # its sibling

import framing
import harness
import zygote
from messages import Ending, Engine, Kind, Mode, Role, Tag

_PR_SET_DUMPABLE = 4
JOB_CGROUP = "/run/rft-job-cgroup"  # sandbox.backends.cgroups.JOB_CGROUP: the job's cgroups, if any
_JOB_CGROUP_PROCS = sorted(glob.glob(f"{JOB_CGROUP}/*/cgroup.procs"))
_MAX_JOB = 64 << 20
_MAX_REPORT = 48 << 20
_GRACE_SECONDS = 1.0
_ACK = framing.HEADER.pack(0)  # an empty frame: the job was read (sandbox/worker.py)


class Settings:
    def __init__(self, argv: list[str]) -> None:
        self.job_uid: int | None = None
        self.workdir = "/tmp"
        self.triton: str | None = None  # "cpu" or "cuda": this runner serves Triton jobs there
        self.packages = ""  # where the service's engine packages are mounted (duckdb, torch, triton)
        args = iter(argv)
        for arg in args:
            if arg == "--job-uid":
                self.job_uid = int(next(args))
            elif arg == "--workdir":
                self.workdir = next(args)
            elif arg == "--triton":
                self.triton = next(args)
            elif arg == "--packages":
                self.packages = next(args)
            else:
                raise SystemExit(f"runner: unknown argument {arg!r}")


def _prctl(option: int, value: int) -> None:
    import ctypes  # only the isolated harness needs it: keeping it out keeps every fork cheaper

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl failed")


def _enter_job(
    settings: Settings, limits: dict[str, Any], jobdir: str, keep: set[int], quiet: bool = True, contain: bool = True
) -> None:
    """In a freshly forked child: drop to the job's uid, set rlimits, close inherited fds.

    Keeps 0-2 and the fds in `keep`; `quiet` points stdio at /dev/null.
    The environment was scrubbed once, at start-up (see `main`): per job it is
    inherited, which is far cheaper in a fresh fork than rebuilding it.
    """
    if quiet:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    low = 3
    for fd in sorted(keep):  # close the gaps between kept fds (close_range: one syscall each)
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    # The job's processes, not the runner, are the kernel's choice when the sandbox's
    # cgroup runs out of memory (raising one's own score needs no privilege); where the job
    # has a memory cgroup of its own (bwrap on cgroup v1), they go into it, still as root.
    adjust = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    os.write(adjust, b"1000")
    os.close(adjust)
    for path in _JOB_CGROUP_PROCS if contain else ():
        procs = os.open(path, os.O_WRONLY)
        os.write(procs, b"0")
        os.close(procs)
    if settings.job_uid is not None:
        os.setgroups([])
        os.setresgid(settings.job_uid, settings.job_uid, settings.job_uid)
        os.setresuid(settings.job_uid, settings.job_uid, settings.job_uid)
    cpu = int(limits["task_ms"] / 1000) + 1
    memory = limits["memory_bytes"]
    for name, value in (
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_DATA, memory),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_NPROC, limits["max_processes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"]),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_MSGQUEUE, 0),  # POSIX message queues would outlive the job: none at all
    ):
        resource.setrlimit(name, (value, value))
    os.chdir(jobdir)
    os.umask(0o077)


def _fork_into(settings: Settings, limits: dict[str, Any], jobdir: str, keep: set[int], contain: bool = True) -> int:
    """A job process; `contain`: in the job's cgroup (all but the harness, which runs only the
    task's code and must keep the job's deadlines while the job's tree is at its limits)."""
    pid = os.fork()
    if pid == 0:
        try:
            _enter_job(settings, limits, jobdir, keep, contain=contain)
        except BaseException:  # noqa: BLE001 - never fall through into the runner's loop
            os._exit(70)
    return pid


def _kill_everything_else(expected: set[int]) -> int:
    """SIGKILL every process in this sandbox but us (and init) until none is left.

    Returns how many were alive besides the job's zygote and harness: daemons and
    stragglers a candidate tried to leave behind.
    """
    me = os.getpid()
    alive = _others(me)
    leftovers = len([p for p in alive if int(p) not in expected])
    give_up = time.monotonic() + 10
    while alive:
        if time.monotonic() > give_up:
            raise RuntimeError(f"could not kill the job's processes: {alive}")
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap_all()
        alive = _others(me)
        if alive:
            time.sleep(0.0005)
    _reap_all()
    return leftovers


class OomCounter:
    """The kernel's count of OOM kills in this sandbox's cgroup, read after every job.

    Both cgroup versions keep an `oom_kill` line: v2 in memory.events, v1 in
    memory.oom_control. A container sees its own cgroup read-only under /sys/fs/cgroup;
    bwrap binds that one file read-only at the same place. The count comes from the
    kernel, never from a job. No file (a sandbox without a cgroup of its own): None.
    """

    _FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")

    def __init__(self) -> None:
        self.fd: int | None = None
        for path in self._FILES:
            try:
                self.fd = os.open(path, os.O_RDONLY)
                break
            except OSError:
                continue
        self.seen = self._count()

    def _count(self) -> int:
        if self.fd is None:
            return 0
        for line in os.pread(self.fd, 4096, 0).splitlines():  # pread at 0: a fresh reading
            name, _, value = line.partition(b" ")
            if name == b"oom_kill":
                return int(value)
        return 0

    def since_last(self) -> int | None:
        if self.fd is None:
            return None
        count = self._count()
        kills, self.seen = count - self.seen, count
        return kills


class SysvIpc:
    """System V shared memory, message queues and semaphores a job left behind.

    They belong to the IPC namespace, which is the worker's (bwrap --unshare-ipc, Docker
    ipc_mode none), not the job's: without this, a later job could read them. Checking
    is a read of three /proc files per job; removing them (rare) takes a short child of
    the job's uid, since IPC_RMID needs the creator's uid (or a capability the runner
    does not have), and every object a job made has the job's uid as its creator.
    """

    _KINDS = ("shm", "msg", "sem")

    def __init__(self) -> None:
        self.fds = [os.open(f"/proc/sysvipc/{kind}", os.O_RDONLY) for kind in self._KINDS]

    def objects(self) -> list[tuple[str, int]]:
        found = []
        for kind, fd in zip(self._KINDS, self.fds, strict=True):
            if os.pread(fd, 4096, 0).count(b"\n") > 1:  # more than the header line
                with open(f"/proc/sysvipc/{kind}", "rb") as handle:  # the whole list
                    found += [(kind, int(line.split()[1])) for line in handle.read().splitlines()[1:] if line.strip()]
        return found

    def remove_all(self, settings: Settings) -> None:
        found = self.objects()
        if not found:
            return
        pid = os.fork()
        if pid == 0:
            try:
                if settings.job_uid is not None:
                    os.setgroups([])
                    os.setresgid(settings.job_uid, settings.job_uid, settings.job_uid)
                    os.setresuid(settings.job_uid, settings.job_uid, settings.job_uid)
                import ctypes  # only in this child: the runner's heap stays small

                libc = ctypes.CDLL(None, use_errno=True)
                remove = {"shm": libc.shmctl, "msg": libc.msgctl, "sem": libc.semctl}
                for kind, ident in found:
                    remove[kind](ident, 0, 0)  # IPC_RMID (semctl's semnum is ignored)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        left = self.objects()
        if left:  # not a job's doing: their creator is always the job uid. A fresh worker.
            raise RuntimeError(f"could not remove System V IPC objects: {left}")


def _reap_all() -> None:
    """Collect every exited child. As a container's pid 1 the runner also inherits orphans,
    whose zombies would otherwise count against the next job's process limit."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _others(me: int) -> list[str]:
    pids = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in (1, me)]
    return [p for p in pids if _state(p) not in ("Z", "X", "")]


def _state(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def _wipe(workdir: str) -> None:
    try:
        os.rmdir(os.path.join(workdir, "job"))  # the common case: the job left nothing
    except OSError:
        pass
    for entry in os.listdir(workdir):
        path = os.path.join(workdir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            _remove_tree(path)
        else:
            os.unlink(path)


def _remove_tree(top: str) -> None:
    """Remove a directory tree however deep a job nested it (thousands of levels: no
    recursion, no long paths), walking it by relative chdir. Only called once every job
    process is gone, so nothing moves under it."""
    home = os.getcwd()
    os.chdir(top)
    names: list[str] = []
    try:
        while True:
            inner = None
            with os.scandir(".") as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        inner = entry.name
                        break
                    os.unlink(entry.name)
            if inner is not None:
                os.chdir(inner)
                names.append(inner)
            elif names:
                os.chdir("..")
                os.rmdir(names.pop())
            else:
                break
    finally:
        os.chdir(home)
    os.rmdir(top)


class Buffer:
    """A byte buffer that forked children never inherit.

    Secrets (assert code with expected values) and reports pass through the runner,
    and every job's zygote is a fork of the runner: whatever sits in the runner's heap
    would be in reach of the next candidate. So those bytes are read straight into an
    anonymous mapping marked MADV_DONTFORK (``readv``: no intermediate ``bytes``
    objects), which no child gets, and the used part is zeroed after use. Untouched
    pages of the mapping cost no memory, so it also keeps forks cheap.
    """

    def __init__(self, size: int) -> None:
        self.data = mmap.mmap(-1, size)
        self.data.madvise(mmap.MADV_DONTFORK)
        self.view = memoryview(self.data)
        self.length = 0

    def read_frame(self, fd: int) -> None:
        (size,) = framing.HEADER.unpack(framing.read_exact(fd, framing.HEADER.size))
        if size > len(self.data):
            raise framing.FrameError(f"frame of {size} bytes exceeds the cap of {len(self.data)}")
        self.length = 0
        while self.length < size:
            got = os.readv(fd, [self.view[self.length : size]])
            if not got:
                raise framing.FrameError("stream closed")
            self.length += got

    def fill_until_closed(self, fd: int, deadline: float) -> str:
        """Read until the writer closes, the deadline passes or the buffer is full."""
        self.length = 0
        while True:
            remaining = deadline - time.monotonic()
            ready = remaining > 0 and select.select([fd], [], [], remaining)[0]
            if not ready:
                return Ending.DEADLINE
            if self.length == len(self.data):
                return Ending.OVERFLOW
            got = os.readv(fd, [self.view[self.length :]])
            if not got:
                return Ending.CLOSED
            self.length += got

    def contents(self) -> memoryview:
        return self.view[: self.length]

    def wipe(self) -> None:
        self.view[: self.length] = bytes(self.length)
        self.length = 0


def _harness_here(settings: Settings, job: dict[str, Any], jobdir: str) -> tuple[str, bytes]:
    """Jobs without secrets: the runner is their harness, one fork (the candidate) per job."""
    records: list[bytes] = []

    def enter(keep: set[int]) -> None:
        _enter_job(settings, job["limits"], jobdir, keep, quiet=False)

    try:
        harness.Harness(job, zygote.DirectSpawner(job, enter), records.append).run({})
    except Exception:  # noqa: BLE001 - a harness bug is reported, and scored as ours
        records.append(framing.pack({"t": Tag.INTERNAL_ERROR, "error": traceback.format_exc()[-2000:]}))
    return Ending.CLOSED, b"".join(records)


def _run_sql(settings: Settings, job: dict[str, Any], jobdir: str) -> bytes:
    """SQL jobs run in this process: the query is data for SQLite, walled in by SQLite itself."""
    import sqlrun  # only workers that see SQL pay for the module

    if job.get("engine") == Engine.DUCKDB:
        return _run_duckdb(settings, job, jobdir)
    started = time.monotonic()

    def answer(records: list[dict[str, Any]]) -> None:
        """The engine stalled inside one step: the watchdog's thread replies for the job (the
        main thread is stuck in SQLite), marked for the pool to replace this worker, and
        ends the process, whose engine no other job may share."""
        try:
            elapsed = round((time.monotonic() - started) * 1000, 3)
            meta = {"mode": Mode.SQL, "ending": Ending.CLOSED, "leftover_processes": 0, "elapsed_ms": elapsed}
            meta["recycle"] = True
            _send_reply(_protocol[0], meta, b"".join(framing.pack(r) for r in records))
        finally:
            os._exit(0)

    return b"".join(framing.pack(r) for r in sqlrun.watched(job, jobdir, answer))


def _run_duckdb(settings: Settings, job: dict[str, Any], jobdir: str) -> bytes:
    """DuckDB is a large native library: it runs in a forked child (job uid, rlimits), never
    in the runner, whose small heap keeps every fork cheap. The runner keeps each database's
    deadline: a child still busy past it (plus grace) is killed, and the databases it did
    not answer are timeouts; one that died without answering failed them (its query did)."""
    import sqlrun

    report_r, report_w = os.pipe()
    limits = {**job["limits"], "memory_bytes": max(job["limits"]["memory_bytes"], 2 << 30)}  # its mappings
    pid = _fork_into(settings, limits, jobdir, {report_w})
    if pid == 0:
        try:
            for record in sqlrun._duckdb_records(job, settings.packages):
                framing.write(report_w, record)
            framing.write(report_w, {"t": Tag.DONE})
        except BaseException:  # noqa: BLE001 - reported, and scored as ours
            framing.write(report_w, {"t": Tag.INTERNAL_ERROR, "error": traceback.format_exc()[-2000:]})
        finally:
            os._exit(0)
    os.close(report_w)
    started = time.monotonic()
    task_deadline = started + job["limits"]["task_ms"] / 1000
    test_seconds = job["limits"]["test_ms"] / 1000
    frames = framing.FrameBuffer(_MAX_REPORT)
    records: list[dict[str, Any]] = []
    ending = "stalled"
    while True:
        deadline = min(task_deadline, started + test_seconds) + sqlrun.STALL_GRACE
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([report_r], [], [], remaining)[0]:
            break
        data = os.read(report_r, 1 << 16)
        if not data:
            ending = Ending.CLOSED
            break
        try:
            arrived = frames.feed(data)
        except framing.FrameError:
            ending = "garbled"
            break
        records.extend(r for r in arrived if isinstance(r, dict))
        if any(r.get("t") == Tag.SQL for r in arrived):
            started = time.monotonic()  # the next database starts now
    os.close(report_r)
    finished = any(r.get("t") in (Tag.DONE, Tag.INTERNAL_ERROR) for r in records)
    if ending == "stalled" and not finished:
        os.kill(pid, signal.SIGKILL)
        why = f"the engine ran {sqlrun.STALL_GRACE:g} s past the deadline: stopped from outside it"
        records += [*sqlrun.unanswered(records, len(job["databases"]), why), {"t": Tag.DONE}]
    elif ending == Ending.CLOSED and not finished:
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        kind = Kind.MEMORY if code == -signal.SIGKILL else Kind.ERROR  # SIGKILL, not ours: the memory limit
        why = f"the engine's process ended without an answer (exit status {code})"
        records += [{**r, "kind": kind, "msg": why} for r in sqlrun.unanswered(records, len(job["databases"]), why)]
        records.append({"t": Tag.DONE})
    elif ending == "garbled":
        records.append({"t": Tag.INTERNAL_ERROR, "error": "the DuckDB child's report is not frames"})
    return b"".join(framing.pack(r) for r in records)


_protocol: list[int] = []  # the reply stream, for the SQL watchdog's reply (main sets it)


def _send_reply(fd: int, meta: dict[str, Any], body: bytes | memoryview) -> None:
    framing.write(fd, meta)
    os.write(fd, framing.HEADER.pack(len(body)))
    while body:
        body = body[os.write(fd, body) :]


def _collect(fd: int, deadline: float) -> tuple[str, bytes]:
    """Read a child's report until it closes it, the deadline passes or the cap is reached."""
    chunks, size, ending = [], 0, Ending.DEADLINE
    while time.monotonic() < deadline:
        if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            break
        data = os.read(fd, 1 << 16)
        if not data:
            ending = Ending.CLOSED
            break
        chunks.append(data)
        size += len(data)
        if size > _MAX_REPORT:
            ending = Ending.OVERFLOW
            break
    os.close(fd)
    return ending, b"".join(chunks)


def _address_space() -> int:
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _run_triton(
    settings: Settings, job: dict[str, Any], jobdir: str, report: Buffer
) -> tuple[str, memoryview, int | None]:
    """Triton jobs run in a forked child (job uid, rlimits) of this runner, which imported
    torch and triton once at start-up; the memory limit is on top of what they map.

    Returns how the report ended, the report (the child's records, as it wrote them) and the
    child's exit code (None if it did not end in time). What this runner knows travels in
    its meta, never among the child's records: candidate code runs in that child and can
    write records of its own, so even the harness's own error there is reported as a record
    of the child's (`harness_error`: the candidate's failure), never as ours.

    The report is read into `report`, which no child inherits and which is wiped once sent:
    read into this heap, a reference's outputs or an earlier candidate's (right answers) would
    be in the memory of every candidate forked after it."""
    import tritonrun

    limits = {**job["limits"], "memory_bytes": _address_space() + job["limits"]["memory_bytes"]}
    deadline = time.monotonic() + job["limits"]["task_ms"] / 1000 + _GRACE_SECONDS
    report_r, report_w = os.pipe()
    pid = _fork_into(settings, limits, jobdir, {report_w})
    if pid == 0:
        try:
            tempfile.tempdir = jobdir  # the runner resolved it before any job directory existed
            if settings.triton == Role.COMPILE:
                import tritoncompile

                tritoncompile.run(job, lambda r: framing.write(report_w, r))
            else:
                tritonrun.run({**job, "device": settings.triton}, lambda r: framing.write(report_w, r))
        except BaseException:  # noqa: BLE001 - the candidate's process: its failure, whatever broke
            framing.write(report_w, {"t": Tag.HARNESS_ERROR, "error": traceback.format_exc()[-2000:]})
        finally:
            os._exit(0)
    os.close(report_w)
    ending = report.fill_until_closed(report_r, deadline)
    os.close(report_r)
    return ending, report.contents(), _exit_code(pid, ending, deadline)


def _exit_code(pid: int, ending: str, deadline: float) -> int | None:
    """How a job child ended (a crash is the candidate's), when it ended in time."""
    while ending == Ending.CLOSED and time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.001)
    return None


def _exit_record(pid: int, ending: str, deadline: float) -> bytes:
    """The control job's exit, as the record the pool expects after its `pong`."""
    code = _exit_code(pid, ending, deadline)
    return b"" if code is None else framing.pack({"t": Tag.EXIT, "code": code})


def _ping(settings: Settings, job: dict[str, Any], jobdir: str) -> tuple[str, bytes]:
    """The pool's control job: a child forked, dropped to the job's uid and rlimits like a
    candidate, reports `pong`. It tells a sandbox that can run jobs from one that cannot."""
    pong = framing.pack({"t": Tag.PONG})
    limits = {**job["limits"], "memory_bytes": _address_space() + job["limits"]["memory_bytes"]}
    report_r, report_w = os.pipe()
    pid = _fork_into(settings, limits, jobdir, {report_w})
    if pid == 0:
        os.write(report_w, pong)
        os._exit(0)
    os.close(report_w)
    ending, body = _collect(report_r, time.monotonic() + job["limits"]["task_ms"] / 1000)
    return ending, body + _exit_record(pid, ending, time.monotonic() + 1.0)


def _harness_isolated(
    settings: Settings, job: dict[str, Any], jobdir: str, secret: Buffer, report: Buffer, deadline: float
) -> tuple[str, memoryview, set[int]]:
    """Whole-mode jobs: a zygote forked before the secret is read, and a separate harness."""
    limits = job["limits"]
    harness_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote_pid = _fork_into(settings, limits, jobdir, {zygote_end.fileno()})
    if zygote_pid == 0:
        harness_end.detach()  # _enter_job closed every fd not kept
        try:
            zygote.serve(job, zygote_end)
        finally:
            os._exit(0)
    zygote_end.close()

    secret.read_frame(0)  # only now, and the zygote could not inherit it anyway
    report_r, report_w = os.pipe()
    secret_r, secret_w = os.pipe()
    harness_pid = _fork_into(settings, limits, jobdir, {harness_end.fileno(), report_w, secret_r}, contain=False)
    if harness_pid == 0:
        try:
            # the candidate runs with the harness's uid and may signal it: SIGINT must not
            # become a KeyboardInterrupt that reads as our failure (other signals kill it,
            # and a harness that ended without its report fails the candidate)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _prctl(_PR_SET_DUMPABLE, 0)
            with os.fdopen(secret_r, "rb") as stream:
                given = json.loads(stream.read())
            emit = lambda data: framing.write_bytes(report_w, data)  # noqa: E731
            harness.Harness(job, zygote.ZygoteSpawner(harness_end), emit).run(given)
        except BaseException:  # noqa: BLE001 - a harness bug is reported, and scored as ours
            framing.write(report_w, {"t": Tag.INTERNAL_ERROR, "error": traceback.format_exc()[-2000:]})
        finally:
            os._exit(0)
    os.close(secret_r)
    body = secret.contents()
    while body:
        body = body[os.write(secret_w, body) :]
    os.close(secret_w)
    secret.wipe()
    harness_end.close()
    os.close(report_w)
    ending = report.fill_until_closed(report_r, deadline)
    os.close(report_r)
    return ending, report.contents(), {zygote_pid, harness_pid}


class JobRun:
    """One job as a mode's handler gets it, and what the runner learns beyond its report.
    (A plain class: `dataclasses` would import `inspect` into every runner, ~1 MiB more
    in each warm worker, and in every job forked from it.)"""

    __slots__ = ("deadline", "job", "jobdir", "known", "report", "secret", "settings")

    def __init__(
        self, settings: Settings, job: dict[str, Any], jobdir: str, secret: Buffer, report: Buffer, deadline: float
    ) -> None:
        self.settings = settings
        self.job = job
        self.jobdir = jobdir
        self.secret = secret
        self.report = report
        self.deadline = deadline
        self.known: dict[str, Any] = {}  # into the reply's meta

    def without_secret(self) -> None:
        """Every mode but whole gets an empty secret frame (expected values never enter)."""
        self.secret.read_frame(0)
        self.secret.wipe()


Ran = tuple[str, Any, set[int]]  # how the report ended, the report, helper processes left to kill


def _whole(run: JobRun) -> Ran:
    return _harness_isolated(run.settings, run.job, run.jobdir, run.secret, run.report, run.deadline)


def _here(run: JobRun) -> Ran:
    run.without_secret()
    return (*_harness_here(run.settings, run.job, run.jobdir), set())


def _triton(run: JobRun) -> Ran:
    run.without_secret()
    if run.settings.triton is None:
        run.known["runner_error"] = "not a Triton runner"
        return Ending.CLOSED, b"", set()
    ending, body, code = _run_triton(run.settings, run.job, run.jobdir, run.report)
    if code is not None:
        run.known["exit_code"] = code
    return ending, body, set()


def _sql(run: JobRun) -> Ran:
    run.without_secret()
    return Ending.CLOSED, _run_sql(run.settings, run.job, run.jobdir), set()


def _control(run: JobRun) -> Ran:
    run.without_secret()
    return (*_ping(run.settings, run.job, run.jobdir), set())


# The runner's modes: a mode is one handler and one line here (and its name in the wire).
HANDLERS: dict[str, Callable[[JobRun], Ran]] = {
    Mode.CALLS: _here,
    Mode.IO: _here,
    Mode.WHOLE: _whole,
    Mode.SQL: _sql,
    Mode.TRITON: _triton,
    Mode.PING: _control,
}


def run_job(
    settings: Settings,
    job: dict[str, Any],
    secret: Buffer,
    report: Buffer,
    oom: OomCounter | None = None,
    ipc: SysvIpc | None = None,
) -> tuple[dict[str, Any], Any]:
    started = time.monotonic()
    jobdir = os.path.join(settings.workdir, "job")
    os.mkdir(jobdir, 0o700)
    if settings.job_uid is not None:
        os.chown(jobdir, settings.job_uid, settings.job_uid)
    mode = job.get("mode") if type(job) is dict else None
    handler = HANDLERS.get(mode) if type(mode) is str else None
    deadline = started + job["limits"]["task_ms"] / 1000 + _GRACE_SECONDS if mode == Mode.WHOLE else 0.0
    run = JobRun(settings, job, jobdir, secret, report, deadline)
    if handler is not None:
        ending, body, helpers = handler(run)
    else:  # the service's bug, never a candidate's: nothing of the job runs
        run.without_secret()
        ending, body, helpers = Ending.CLOSED, b"", set()
        run.known["runner_error"] = f"unknown job mode {str(mode)[:40]!r}"
    leftovers = _kill_everything_else(helpers)
    _wipe(settings.workdir)
    if ipc is not None:
        ipc.remove_all(settings)
    meta: dict[str, Any] = {
        "mode": mode,  # the records are this mode's (the service checks them against it)
        "ending": ending,
        "leftover_processes": leftovers,
        "elapsed_ms": round((time.monotonic() - started) * 1000, 3),
        **run.known,
    }
    kills = oom.since_last() if oom is not None else None
    if kills is not None:
        meta["oom_kills"] = kills
    return meta, body


def _preload_triton(device: str, jobdir: str, packages: str) -> None:
    """Import torch and triton once, so every job's fork starts warm (seconds saved per job).

    `device` is "cpu" (kernels run in Triton's interpreter), "cuda", or "compile" (kernels
    the interpreter ran are compiled for a GPU). Triton decides at import time whether it
    interprets or compiles, and a process that imported it one way cannot do the other:
    so interpreting and compiling are runners of their own."""
    os.environ.update(
        {
            "TRITON_CACHE_DIR": os.path.join(jobdir, ".triton"),
            "TRITON_DEFAULT_FP_FUSION": "1",
            "OMP_NUM_THREADS": "1",
            "TRITON_INTERPRET": "1" if device == "cpu" else "0",
        }
    )
    if packages and os.path.isdir(packages):  # the service's torch and triton, mounted read-only
        sys.path.insert(0, packages)
    import triton.compiler.code_generator  # noqa: F401 - triton whole, in this runner's mode
    import tritonrun  # imports torch

    tritonrun.warm_up()
    gc.freeze()


def main() -> None:
    settings = Settings(sys.argv[1:])
    if os.getpid() > 2:
        # cleanup is kill(-1): only safe as (nearly) the first process of a PID namespace
        raise SystemExit("runner: refusing to run outside a fresh PID namespace")
    # SIGPIPE stays ignored (Python's default): a candidate that shuts its channel must cost
    # the runner a BrokenPipeError on its next write, not its life.
    gc.freeze()  # fewer copy-on-write faults in every forked child
    os.makedirs(settings.workdir, exist_ok=True)
    _wipe(settings.workdir)
    jobdir = os.path.join(settings.workdir, "job")
    os.environ.clear()
    os.environ.update(
        {
            "HOME": jobdir,
            "TMPDIR": jobdir,
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    if settings.triton is not None:
        _preload_triton(settings.triton, jobdir, settings.packages)
    protocol_out = os.dup(1)
    _protocol.append(protocol_out)
    os.dup2(2, 1)  # a stray print must never corrupt the protocol stream
    secret, report = Buffer(_MAX_JOB), Buffer(_MAX_REPORT)
    oom, ipc = OomCounter(), SysvIpc()
    framing.write(
        protocol_out, {"ready": True, "pid": os.getpid(), "python": sys.version.split()[0], "job_uid": settings.job_uid}
    )
    while True:
        try:
            job = framing.read(0, _MAX_JOB)
        except framing.FrameError:
            return  # the service hung up
        os.write(protocol_out, _ACK)  # before any of the job runs: a failure after it may be the job's
        meta, body = run_job(settings, job, secret, report, oom, ipc)
        _send_reply(protocol_out, meta, body)
        report.wipe()


if __name__ == "__main__":
    main()
