"""Hostile candidates against the real service: every attack must be contained.

Each test sends real tasks over loopback gRPC to real bubblewrap sandboxes (the session
`client`). Most hostile candidates *attempt* an attack and report what happened as
their return value: "blocked" when every attempt failed, a description of what got
through otherwise. Those tasks expect "blocked", so PASSED means the attack was
contained and a FAILED result's message names what escaped. Attacks that take the
candidate process down are checked on the result's status and findings instead.
After every attack the service must still score normal tasks on every worker, and no
sandbox worker may have died.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandbox.api import pb
from sandbox.backends.policy import RUNNER_DIR, SandboxPolicy
from sandbox.python.plan import plan_assert_tests
from sandbox.python.static_checks import check_python
from tests.helpers import MiB, assert_task, call_task, finding_codes, limits, status_name

# Inherited by the sandboxes the session's server starts (tests are collected before
# any fixture runs): no candidate may ever see it.
CANARY = "rft-hostile-canary-5c1f"
os.environ["RFT_HOSTILE_CANARY"] = CANARY

FAST = limits(test_ms=1500, task_ms=4000)
TASK_SECONDS = 4.0
SLACK_SECONDS = 3.0  # runner grace + service overhead: a result must come back by task time + this
MODES = ("calls", "exprs", "whole")
JOB_UID = SandboxPolicy().job_uid_base  # slot n runs jobs as uid JOB_UID + n

# The expected answers the hunting candidates look for. They exist in this file and in
# the service's memory; a sandbox must never let a candidate read them.
MARKER = "zq-marker-8675309"
CROSS_MARKER = "zq-marker-24601"


# --------------------------------------------------------------------------- helpers


def whole_check(expected: str, entry: str = "f", args: str = "") -> str:
    """Assert code the planner cannot split: the expected value comes from a helper."""
    return (
        "def check(candidate):\n"
        "    def expected():\n"
        f"        return {expected!r}\n"
        f"    assert candidate({args}) == expected()\n"
    )


def task_for(
    mode: str, task_id: str, code: str, expected: object = "blocked", lim: pb.Limits | None = FAST, entry: str = "f"
) -> pb.Task:
    """One test, `f() == expected`, as call test, split assert or whole-mode assert."""
    if mode == "calls":
        return call_task(task_id, code, entry, [([], expected)], lim)
    test = f"assert {entry}() == {expected!r}\n" if mode == "exprs" else whole_check(str(expected), entry)
    assert plan_assert_tests(entry, test).mode == mode, "the test code does not select the mode under test"
    return assert_task(task_id, code, entry, test, lim)


def timed(client, task: pb.Task) -> tuple[pb.Result, float]:
    started = time.monotonic()
    result = client.score(task)
    return result, time.monotonic() - started


def describe(result: pb.Result) -> str:
    return (
        f"{status_name(result)} score={result.score} findings={sorted(finding_codes(result))} "
        f"message={result.message[:400]!r} stdout={result.stdout_excerpt[:400]!r} "
        f"stderr={result.stderr_excerpt[-400:]!r}"
    )


def assert_contained(result: pb.Result) -> None:
    """The candidate returned "blocked" (or its task's other expected value)."""
    assert status_name(result) == "PASSED" and result.score == 1.0, f"attack not contained: {describe(result)}"


def assert_scored_zero(result: pb.Result, *, allowed: tuple[str, ...] = ()) -> None:
    """A hostile candidate with a wrong answer: no credit, and never blamed on the sandbox."""
    status = status_name(result)
    assert status not in ("PASSED", "SANDBOX_ERROR"), describe(result)
    assert result.score == 0.0, describe(result)
    if allowed:
        assert status in allowed, describe(result)


def host_port(server) -> int:
    return int(server.target.rsplit(":", 1)[1])


@pytest.fixture
def intact(client, assert_healthy) -> Callable[[], None]:
    """Checker: normal tasks still pass on every worker and no sandbox worker died."""
    failures = client.stats().worker_failures

    def check() -> None:
        assert_healthy()
        assert client.stats().worker_failures == failures, "a sandbox worker died: the attack reached the runner"

    return check


STRAGGLERS = """
import os, time

def f():
    time.sleep(0.2)
    expected = {1, os.getppid(), os.getpid()}  # the sandbox's init, the runner, this candidate
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) in expected:
            continue
        try:
            with open(f"/proc/{pid}/status") as handle:
                status = handle.read()
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(status.split("Uid:")[1].split()[0])
        state = status.split("State:")[1].split()[0]
        if state not in ("Z", "X"):
            found.append(f"pid {pid} uid {uid}: {cmdline[:80]}")
    for folder in {os.getcwd(), "/tmp"}:
        found += [f"{folder}/{name}" for name in os.listdir(folder) if name.startswith("rft-daemon")]
    return "clean" if not found else "; ".join(found)
"""


def assert_no_stragglers(client) -> None:
    """Later jobs, on every worker, see no process and no file of an earlier job."""
    tasks = [task_for("calls", f"stragglers-{i}", STRAGGLERS, "clean") for i in range(4)]
    for result in client.score_batch(tasks):
        assert_contained(result)


# --------------------------------------------------------------------------- resources

FORK_BOMB = """
import os

def f():
    while True:
        try:
            os.fork()
        except OSError:
            pass
"""

FORK_COUNT = """
import os, time

def f():
    children = 0
    try:
        while children < 1000:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except OSError:
        pass
    return "blocked" if children <= 64 else f"escaped: {children} children"
"""


def test_fork_bomb_times_out_and_leaves_nothing(client, intact):
    result, elapsed = timed(client, task_for("calls", "fork-bomb", FORK_BOMB))
    assert status_name(result) == "TIMEOUT" and result.score == 0.0, describe(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    assert_no_stragglers(client)
    intact()


def test_fork_count_is_capped_by_nproc(client, intact):
    assert_contained(client.score(task_for("calls", "fork-count", FORK_COUNT)))
    assert_no_stragglers(client)
    intact()


MEMORY_BOMBS = {
    "one-huge-allocation": "def f():\n    block = bytearray(10**10)\n    return 'blocked'\n",
    "growing-list": "def f():\n    hoard = []\n    while True:\n        hoard.append(b'x' * (1 << 20))\n",
    "repeat-bytes": "def f():\n    return b'x' * (1 << 40)\n",
    "at-load": "hoard = [bytearray(1 << 20) for _ in range(10**5)]\ndef f():\n    return 'blocked'\n",
}


def _memory_cases() -> list:
    return [
        pytest.param(
            bomb,
            mode,
            id=f"{bomb}-{mode}",
        )
        for bomb in sorted(MEMORY_BOMBS)
        for mode in ("calls", "whole")
    ]


@pytest.mark.parametrize(("bomb", "mode"), _memory_cases())
def test_memory_bomb_hits_memory_limit(client, intact, bomb, mode):
    lim = limits(test_ms=1500, task_ms=4000, memory=256 * MiB)
    result, elapsed = timed(client, task_for(mode, f"memory-{bomb}", MEMORY_BOMBS[bomb], "blocked", lim))
    assert status_name(result) == "MEMORY_LIMIT" and result.score == 0.0, describe(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    intact()


BUSY = {
    "spin": "def f():\n    while True:\n        pass\n",
    "spin-ignoring-signals": (
        "import signal\n"
        "def f():\n"
        "    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGALRM):\n"
        "        signal.signal(sig, signal.SIG_IGN)\n"
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    ),
    "sleep": "import time\ndef f():\n    time.sleep(3600)\n",
    "spin-at-load": "while True:\n    pass\ndef f():\n    return 'blocked'\n",
}


@pytest.mark.parametrize("variant", sorted(BUSY))
def test_busy_candidate_times_out(client, intact, variant):
    result, elapsed = timed(client, task_for("calls", f"busy-{variant}", BUSY[variant]))
    assert status_name(result) == "TIMEOUT" and result.score == 0.0, describe(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS, f"took {elapsed:.1f}s"
    intact()


@pytest.mark.parametrize("mode", MODES)
def test_busy_loop_stops_at_the_task_deadline(client, intact, mode):
    """Five tests that each spin: the whole task still ends at its own deadline."""
    code = BUSY["spin"].replace("def f():", "def f(n=0):")
    if mode == "calls":
        task = call_task("busy-many", code, "f", [([n], n) for n in range(5)], FAST)
    elif mode == "exprs":
        task = assert_task("busy-many", code, "f", "".join(f"assert f({n}) == {n}\n" for n in range(5)), FAST)
    else:
        test = "def check(candidate):\n    for n in range(5):\n        assert candidate(n) == abs(n)\n"
        assert plan_assert_tests("f", test).mode == "whole"
        task = assert_task("busy-many", code, "f", test, FAST)
    result, elapsed = timed(client, task)
    assert status_name(result) == "TIMEOUT" and result.score == 0.0, describe(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS, f"took {elapsed:.1f}s for a {TASK_SECONDS}s task"
    assert_no_stragglers(client)
    intact()


THREADS = """
import threading, time

def f():
    started = 0
    try:
        while started < 10000:
            threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
            started += 1
    except (RuntimeError, MemoryError, OSError):
        pass
    return "blocked" if started <= 64 else f"escaped: {started} threads"
"""


def test_many_threads_are_capped(client, intact):
    assert_contained(client.score(task_for("calls", "threads", THREADS)))
    assert_no_stragglers(client)
    intact()


DISK_FILL = """
import errno, os, time

def f():
    chunk = b"x" * (1 << 20)
    sizes, errors = [], set()
    for i in range(64):
        name = f"__NAME__-{i}"
        try:
            with open(name, "wb", buffering=0) as handle:
                while os.path.getsize(name) < 64 << 20:
                    handle.write(chunk)
        except OSError as exc:
            errors.add(exc.errno)
        sizes.append(os.path.getsize(name))
        if errno.ENOSPC in errors:
            break
    problems = []
    if max(sizes) > __FILE_LIMIT__:
        problems.append(f"a file grew to {max(sizes)} bytes")
    if errno.EFBIG not in errors:
        problems.append("the file size limit never stopped a write")
    if errno.ENOSPC not in errors or sum(sizes) > __TMP_LIMIT__:
        problems.append(f"{sum(sizes)} bytes written without running out of space")
    stat = os.statvfs(".")
    if stat.f_blocks * stat.f_frsize > __TMP_LIMIT__:
        problems.append(f"the job's filesystem holds {stat.f_blocks * stat.f_frsize} bytes")
    for outside in ("/tmp/__NAME__", "/__NAME__"):
        try:
            with open(outside, "wb") as handle:
                handle.write(chunk)
            problems.append(f"wrote {outside}")
        except OSError:
            pass
    time.sleep(0.8)  # keep it all while the host is measured
    return "blocked" if not problems else "; ".join(problems)
"""

FREE_SPACE = """
import os, time

def f():
    time.sleep(0.2)
    stat = os.statvfs(".")
    free = stat.f_bavail * stat.f_frsize
    leftovers = os.listdir(".")
    if leftovers or free < __TMP_LIMIT__ - (8 << 20):
        return f"{free} bytes free, leftovers {leftovers[:5]}"
    return "clean"
"""


def test_disk_fill_stops_at_limits_and_never_reaches_the_host(client, server, intact):
    tmp_limit = server.server.pool.policy.tmp_bytes
    file_limit = server.server.config.max_file_bytes
    name = f"rft-fill-{os.getpid()}-{time.monotonic_ns()}"
    code = (
        DISK_FILL.replace("__NAME__", name)
        .replace("__FILE_LIMIT__", str(file_limit))
        .replace("__TMP_LIMIT__", str(tmp_limit))
    )
    before = shutil.disk_usage("/").used
    growth = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            growth[0] = max(growth[0], shutil.disk_usage("/").used - before)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = client.score(task_for("calls", "disk-fill", code, lim=limits(test_ms=8000, task_ms=10000)))
    finally:
        done.set()
        watcher.join()
    assert_contained(result)
    # the candidate held ~tmp_limit bytes while this was measured: none of it on the host's disk
    assert growth[0] < tmp_limit * 3 // 4, f"host disk grew by {growth[0]} bytes during the job"
    for folder in ("/tmp", os.getcwd(), str(Path(__file__).parent)):
        assert not list(Path(folder).glob(f"{name}*")), f"the candidate's file appeared in {folder}"
    later = [
        task_for("calls", f"free-{i}", FREE_SPACE.replace("__TMP_LIMIT__", str(tmp_limit)), "clean") for i in range(4)
    ]
    for after in client.score_batch(later):
        assert_contained(after)
    intact()


OUTPUT_FLOODS = {
    "print-loop": "def f():\n    while True:\n        print('x' * 1000)\n",
    "stderr-loop": "import sys\ndef f():\n    while True:\n        sys.stderr.write('e' * 1000)\n",
    "raw-fd-write": "import os\ndef f():\n    while True:\n        os.write(1, b'y' * 65536)\n",
    "one-huge-print": "def f():\n    print('z' * (64 << 20))\n    return 'blocked'\n",
    "at-load": "while True:\n    print('x' * 1000)\ndef f():\n    return 'blocked'\n",
}


@pytest.mark.parametrize("mode", ["calls", "whole"])
@pytest.mark.parametrize("flood", sorted(OUTPUT_FLOODS))
def test_output_flood_hits_output_limit(client, intact, flood, mode):
    lim = limits(test_ms=1500, task_ms=4000, output=64 << 10)
    result, elapsed = timed(client, task_for(mode, f"flood-{flood}", OUTPUT_FLOODS[flood], "blocked", lim))
    assert status_name(result) == "OUTPUT_LIMIT" and result.score == 0.0, describe(result)
    assert len(result.stdout_excerpt) <= 8192 and len(result.stderr_excerpt) <= 8192
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    intact()


FD_EXHAUSTION = {
    "files": "lambda: [os.open('/dev/null', os.O_RDONLY)]",
    "pipes": "lambda: list(os.pipe())",
    "sockets": "lambda: socket.socketpair()",
}

FD_CODE = """
import errno, os, socket

def f():
    make = __MAKE__
    held = []
    try:
        while len(held) < 100000:
            held.extend(make())
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return f"unexpected error {exc!r}"
    return "blocked" if len(held) <= 256 else f"escaped: {len(held)} descriptors"
"""


@pytest.mark.parametrize("kind", sorted(FD_EXHAUSTION))
def test_fd_exhaustion_is_capped(client, intact, kind):
    assert_contained(client.score(task_for("calls", f"fds-{kind}", FD_CODE.replace("__MAKE__", FD_EXHAUSTION[kind]))))
    intact()


CRASHES = {
    "recursion-error": ("def f(n=0):\n    return f(n + 1)\n", "RecursionError"),
    "null-pointer": ("import ctypes\ndef f():\n    return ctypes.string_at(0)\n", "signal 11"),
    "c-stack-overflow": (
        "import sys\nsys.setrecursionlimit(10**7)\ndef f(n=0):\n    return f.__call__(n + 1)\n",
        "signal 11",
    ),
    "abort": ("import os\ndef f():\n    os.abort()\n", "signal 6"),
    "kill-self": ("import os, signal\ndef f():\n    os.kill(os.getpid(), signal.SIGKILL)\n", "signal 9"),
}


@pytest.mark.parametrize("mode", ["calls", "whole"])
@pytest.mark.parametrize("crash", sorted(CRASHES))
def test_crashing_candidate_is_a_runtime_error(client, intact, crash, mode):
    code, why = CRASHES[crash]
    result, elapsed = timed(client, task_for(mode, f"crash-{crash}", code))
    assert status_name(result) == "RUNTIME_ERROR" and result.score == 0.0, describe(result)
    if mode == "calls":
        assert why in result.tests[0].message, describe(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    intact()


# --------------------------------------------------------------------------- processes

DAEMON = """
import os, time

def f():
    first = os.fork()
    if first == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.closerange(3, 1024)
                if os.fork() == 0:
                    os.execv("/bin/sleep", ["sleep", "7357"])
                time.sleep(1.0)
                for folder in (os.getcwd(), "/tmp"):
                    try:
                        with open(os.path.join(folder, "rft-daemon-was-here"), "w") as handle:
                            handle.write("alive")
                    except OSError:
                        pass
                time.sleep(60)
        finally:
            os._exit(0)
    os.waitpid(first, 0)
    time.sleep(0.3)
    return "spawned"
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_double_forked_daemon_does_not_outlive_its_job(client, intact, mode):
    tasks = [task_for(mode, f"daemon-{i}", DAEMON, "spawned") for i in range(2)]  # one per worker
    for result in client.score_batch(tasks):
        assert status_name(result) == "PASSED", describe(result)
        assert "process_left_behind" in finding_codes(result), describe(result)
    time.sleep(1.2)  # a surviving daemon would have written its file by now
    assert_no_stragglers(client)
    intact()


KILL_TARGETS = {
    "init": "[1]",
    "everyone": "[-1]",
    "parent": "[os.getppid()]",
    "root-processes": "[int(p) for p in os.listdir('/proc') if p.isdigit() and os.stat(f'/proc/{p}').st_uid == 0]",
}

KILL_CODE = """
import os, signal, time

def _others():
    states = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                with open(f"/proc/{pid}/stat", "rb") as handle:
                    states[int(pid)] = handle.read().rsplit(b")", 1)[1].split()[0].decode()
            except OSError:
                pass
    return states

def f():
    before = {pid: state for pid, state in _others().items() if state not in ("Z", "X")}  # zombies may go
    for pid in __TARGETS__:
        try:
            os.kill(pid, signal.__SIGNAL__)
        except (PermissionError, ProcessLookupError):
            pass
    time.sleep(0.1)
    after = _others()
    hurt = [pid for pid in before if after.get(pid, "gone") in ("gone", "T", "t", "Z", "X")]
    return "blocked" if before and not hurt else f"hurt {hurt} of {before}"
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
@pytest.mark.parametrize("target", sorted(KILL_TARGETS))
def test_candidate_cannot_signal_the_runner(client, intact, target, sig):
    """Split tests: the candidate's only peers are root-owned (init, runner/judge)."""
    code = KILL_CODE.replace("__TARGETS__", KILL_TARGETS[target]).replace("__SIGNAL__", sig)
    result, elapsed = timed(client, task_for("calls", f"kill-{target}", code))
    assert_contained(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    intact()


WHOLE_KILL = """
import os, signal, time

def f():
    try:
        os.kill(__TARGET__, signal.__SIGNAL__)
    except OSError:
        pass
    time.sleep(0.2)
    return "wrong"
"""


@pytest.mark.parametrize(
    ("target", "sig"),
    [
        ("1", "SIGKILL"),
        ("-1", "SIGKILL"),
        ("-1", "SIGSTOP"),
        ("os.getppid()", "SIGKILL"),
        ("os.getppid()", "SIGSTOP"),
    ],
    ids=["init-kill", "everyone-kill", "everyone-stop", "zygote-kill", "zygote-stop"],
)
def test_whole_mode_candidate_killing_its_helpers_gains_nothing(client, intact, target, sig):
    """Whole mode: zygote and judge share the candidate's uid; signalling them only sinks the candidate."""
    code = WHOLE_KILL.replace("__TARGET__", target).replace("__SIGNAL__", sig)
    result, elapsed = timed(client, task_for("whole", "whole-kill", code, "right"))
    assert elapsed < TASK_SECONDS + SLACK_SECONDS, f"took {elapsed:.1f}s"
    assert_scored_zero(result)
    assert_no_stragglers(client)
    intact()


PTRACE = """
import ctypes, errno, os

class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

def f():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    me = os.getpid()
    targets = sorted({1, os.getppid()} | {int(p) for p in os.listdir("/proc") if p.isdigit()} - {me})
    got = []
    buffer = ctypes.create_string_buffer(64)
    for pid in targets:
        for request, name in ((16, "PTRACE_ATTACH"), (0x4206, "PTRACE_SEIZE")):
            if libc.ptrace(request, pid, None, None) != -1:
                got.append(f"{name} {pid}")
                libc.ptrace(17, pid, None, None)
        local = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 64)
        remote = IoVec(0x400000, 64)
        if libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) >= 0:
            got.append(f"process_vm_readv {pid}")
        elif ctypes.get_errno() not in (errno.EPERM, errno.ESRCH):
            got.append(f"process_vm_readv {pid} got past the permission check: errno {ctypes.get_errno()}")
    return "blocked" if targets and not got else f"{got} of {targets}"
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_ptrace_of_other_processes_is_denied(client, intact, mode):
    """In whole mode this includes the judge, which holds the expected values."""
    assert_contained(client.score(task_for(mode, "ptrace", PTRACE)))
    intact()


PRIVILEGES = """
import os, subprocess

def f():
    problems = []
    with open("/proc/self/status") as handle:
        status = dict(line.split(":", 1) for line in handle.read().splitlines() if ":" in line)
    for field in ("CapEff", "CapPrm", "CapAmb"):
        if int(status[field].strip(), 16):
            problems.append(f"{field} {status[field].strip()}")
    if status["NoNewPrivs"].strip() != "1":
        problems.append("setuid programs could gain privileges")
    if 0 in os.getresuid() or 0 in os.getresgid():
        problems.append(f"runs as root {os.getresuid()}")
    for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0]), lambda: os.chroot("/")):
        try:
            call()
            problems.append("a privileged call succeeded")
        except OSError:
            pass
    for command in (["/usr/bin/su", "-c", "id -u"], ["/usr/bin/mount", "-t", "tmpfs", "none", "/usr"]):
        if os.path.exists(command[0]):
            run = subprocess.run(command, capture_output=True, stdin=subprocess.DEVNULL, timeout=2)
            if run.returncode == 0:
                problems.append(f"{command[0]} succeeded: {run.stdout[:40]!r}")
    return "blocked" if not problems else "; ".join(problems)
"""


def test_candidate_has_no_privileges(client, intact):
    assert_contained(client.score(task_for("calls", "privileges", PRIVILEGES)))
    intact()


# --------------------------------------------------------------------------- host

HOST_FILES = """
import hashlib, os

def f():
    leaked = []
    for path, host_view in __VIEWS__.items():  # the host's own content, to recognise it
        try:
            if os.path.isdir(path):
                view = sorted((name, sorted(os.listdir(os.path.join(path, name)))
                               if os.path.isdir(os.path.join(path, name)) else None) for name in os.listdir(path))
            else:
                with open(path, "rb") as handle:
                    view = hashlib.sha256(handle.read(1 << 16)).hexdigest()
        except OSError:
            continue
        if view == host_view:
            leaked.append(path)
    return "blocked" if not leaked else f"host files visible: {leaked}"
"""


def _host_view(path: str) -> object:
    """What the probe would report for `path` if it saw the host's own file or directory."""
    if os.path.isdir(path):  # two levels: a base image's /var has the same names as the host's
        return sorted(
            (name, sorted(os.listdir(os.path.join(path, name))) if os.path.isdir(os.path.join(path, name)) else None)
            for name in os.listdir(path)
        )
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read(1 << 16)).hexdigest()


def host_secrets(audit_path: str) -> list[str]:
    """Paths that exist on the host and must not exist in a sandbox."""
    interpreter_home = Path(sys.base_prefix).resolve().parts[1:3]  # e.g. ('root', '.pyenv') stays visible
    candidates = [
        "/etc/shadow",
        "/etc/passwd",
        "/etc/hostname",
        "/etc/hosts",
        "/home",
        "/var",
        "/run",
        "/var/run/docker.sock",
        "/work",
        "/work/main",
        str(Path(__file__).resolve()),
        str(Path(__file__).resolve().parents[1] / "pyproject.toml"),
        audit_path,
        str(Path(audit_path).parent),
    ]
    if Path("/root").is_dir():
        for entry in os.listdir("/root"):
            if ("root", entry) != tuple(interpreter_home):
                candidates.append(f"/root/{entry}")
    return [p for p in candidates if os.path.lexists(p)]


def test_host_files_are_invisible(client, audit_path, intact):
    client.score(task_for("calls", "make-audit-entry", "import os\ndef f():\n    os._exit(0)\n"))
    assert os.path.getsize(audit_path) > 0, "the audit log should hold the early_exit finding by now"
    paths = host_secrets(audit_path)
    assert audit_path in paths and "/etc/passwd" in paths, "the probe must look for files the host really has"
    # A container has its own /etc/passwd, /var, /run...: only the host's own content counts as seen.
    views = {path: _host_view(path) for path in paths if os.access(path, os.R_OK)}
    assert_contained(client.score(task_for("calls", "host-files", HOST_FILES.replace("__VIEWS__", repr(views)))))
    intact()


HOST_PROBES = {
    "proc-of-init-and-runner": """
import os

def f():
    seen = []
    for path in ("/proc/1/environ", "/proc/2/environ", "/proc/1/root/", "/proc/2/root/", "/proc/1/cwd/",
                 "/proc/1/fd/", "/proc/2/fd/", "/proc/1/mem", "/proc/2/mem", "/proc/2/maps"):
        try:
            if path.endswith("/"):
                seen.append(f"{path}: {os.listdir(path)[:5]}")
            else:
                with open(path, "rb") as handle:
                    seen.append(f"{path}: {handle.read(80)!r}")
        except OSError:
            pass
    return "blocked" if not seen else "; ".join(seen)
""",
    "environment": """
import os

def f():
    bad = {k: v for k, v in os.environ.items()
           if k.startswith("RFT_") or "__CANARY__" in v or v == "__HOST_HOME__" or k in ("SSH_AUTH_SOCK", "USER")}
    return "blocked" if not bad and os.environ.get("HOME") != "__HOST_HOME__" else f"leaked {bad}"
""",
    "network-interfaces": """
import socket

def f():
    names = [name for _, name in socket.if_nameindex()]
    return "blocked" if names == ["lo"] else f"interfaces {names}"
""",
    "hostname-and-sys": """
import os, socket

def f():
    problems = []
    if socket.gethostname() == "__HOST_NAME__":
        problems.append("shares the host's hostname")
    for path in ("/dev/sda", "/dev/vda", "/dev/kmsg", "/dev/mem"):
        if os.path.exists(path):
            problems.append(path)
    if os.path.isdir("/sys/class/net") and os.listdir("/sys/class/net") != ["lo"]:
        problems.append(f"/sys/class/net lists {os.listdir('/sys/class/net')}")  # the host's interfaces
    return "blocked" if not problems else "; ".join(problems)
""",
}


@pytest.mark.parametrize("probe", sorted(HOST_PROBES))
def test_host_environment_is_invisible(client, intact, probe):
    assert os.environ.get("RFT_HOSTILE_CANARY") == CANARY
    code = (
        HOST_PROBES[probe]
        .replace("__CANARY__", CANARY)
        .replace("__HOST_HOME__", os.path.expanduser("~"))
        .replace("__HOST_NAME__", socket.gethostname())
    )
    assert_contained(client.score(task_for("calls", f"host-{probe}", code)))
    intact()


NETWORK = """
import socket

def f():
    reached = []
    for family, address in ((socket.AF_INET, ("127.0.0.1", __PORT__)), (socket.AF_INET6, ("::1", __PORT__))):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(address)
                reached.append(address)
        except OSError:
            pass
    return "blocked" if not reached else f"connected to {reached}"
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_service_port_is_unreachable(client, server, intact, mode):
    port = host_port(server)
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # it is listening on the host's loopback: the probe below has a real target
    assert_contained(client.score(task_for(mode, "network", NETWORK.replace("__PORT__", str(port)))))
    intact()


WRITE_OUTSIDE = """
import os

def f():
    path = __PATH__
    try:
        if __CREATE__:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            os.unlink(path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)  # no truncation, nothing written
            os.close(fd)
    except OSError:
        pass
    else:
        return f"opened {path} for writing"
    for attempt in (lambda: os.mkdir(path + ".d"), lambda: os.chmod(path, 0o777), lambda: os.utime(path),
                    lambda: os.symlink("/", path + ".lnk")):
        try:
            attempt()
            return f"changed {path}"
        except OSError:
            pass
    return "blocked"
"""

RUNNER_FILE = Path(RUNNER_DIR, "agent.py").resolve()
WRITE_TARGETS = {
    "usr": ("/usr/rft-hostile-probe", True),
    "usr-bin-python": (os.path.realpath(sys.executable), False),
    "stdlib-json": (str(Path(os.__file__).parent / "json" / "__init__.py"), False),
    "runner-agent": ("/opt/rft-runner/agent.py", False),
    "runner-dir": ("/opt/rft-runner/rft-hostile-probe", True),
    "wire-messages": ("/opt/wire/messages.py", False),
    "wire-dir": ("/opt/wire/rft-hostile-probe", True),
    "root": ("/rft-hostile-probe", True),
    "etc": ("/etc/rft-hostile-probe", True),
    "dev": ("/dev/rft-hostile-probe", True),
    "dev-shm": ("/dev/shm/rft-hostile-probe", True),
    "proc-sys": ("/proc/sys/kernel/hostname", False),
}


@pytest.mark.parametrize("target", sorted(WRITE_TARGETS))
def test_writes_outside_the_job_directory_fail(client, intact, target):
    path, create = WRITE_TARGETS[target]
    before = hashlib.sha256(RUNNER_FILE.read_bytes()).hexdigest(), RUNNER_FILE.stat().st_mode
    code = WRITE_OUTSIDE.replace("__PATH__", repr(path)).replace("__CREATE__", repr(create))
    assert_contained(client.score(task_for("calls", f"write-{target}", code)))
    assert (hashlib.sha256(RUNNER_FILE.read_bytes()).hexdigest(), RUNNER_FILE.stat().st_mode) == before
    assert not os.path.lexists("/usr/rft-hostile-probe") and not os.path.lexists("/rft-hostile-probe")
    intact()


# --------------------------------------------------------------------------- between jobs

POISON = """
import os, sys, time

PAYLOAD = "POISONED = True\\nprint('POISONED by an earlier job')\\n"

def f():
    home = os.environ.get("HOME", ".")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    folders = [os.getcwd(), os.environ.get("TMPDIR", "."), home, "/tmp", "/dev/shm",
               os.path.join(home, ".local", "lib", version, "site-packages"), os.path.join("deep", "er")]
    planted = 0
    for folder in folders:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        for name in ("json.py", "sitecustomize.py", "usercustomize.py", "rft_poison.py", "rft_poison.pth"):
            try:
                with open(os.path.join(folder, name), "w") as handle:
                    handle.write("import rft_poison\\n" if name.endswith(".pth") else PAYLOAD)
                planted += 1
            except OSError:
                pass
    for make in (lambda: os.mkfifo("rft-fifo"), lambda: os.symlink("/", "rft-link"), lambda: os.chmod("deep", 0)):
        try:
            make()
        except OSError:
            pass
    time.sleep(0.3)  # long enough that the other worker takes the other copy
    return "planted" if planted >= 10 else f"planted only {planted}"
"""

CLEAN_START = """
import os, subprocess, sys, time

def f():
    time.sleep(0.3)
    print("uid", os.getuid())
    problems = []
    here = os.listdir(".")
    if here:
        problems.append(f"cwd holds {sorted(here)}")
    others = sorted(set(os.listdir("/tmp")) - {os.path.basename(os.getcwd())})
    if others:
        problems.append(f"/tmp holds {others}")
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.__file__, getattr(json, 'POISONED', False), "
         "'rft_poison' in sys.modules)"],
        capture_output=True, text=True, timeout=10,
    )
    stdlib = os.path.dirname(os.__file__)
    if probe.returncode != 0 or "POISON" in probe.stdout or probe.stdout.split() != [
        os.path.join(stdlib, "json", "__init__.py"), "False", "False"
    ]:
        problems.append(f"a fresh python saw {probe.stdout[:200]!r} {probe.stderr[-200:]!r}")
    import json
    if not json.__file__.startswith(stdlib) or hasattr(json, "POISONED"):
        problems.append(f"json is {json.__file__}")
    return "clean" if not problems else "; ".join(problems)
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_files_and_modules_do_not_survive_into_the_next_job(client, intact, mode):
    uids: set[int] = set()
    for round_ in range(4):
        planted = list(
            client.score_batch([task_for(mode, f"poison-{round_}-{i}", POISON, "planted") for i in range(2)])
        )
        for result in planted:
            assert_contained(result)  # it really planted its files
        checks = list(
            client.score_batch([task_for(mode, f"clean-{round_}-{i}", CLEAN_START, "clean") for i in range(2)])
        )
        for result in checks:
            assert_contained(result)
            uids.update(int(line.split()[1]) for line in result.stdout_excerpt.splitlines() if line.startswith("uid"))
        if len(uids) >= 2 and round_ >= 1:
            break
    assert uids == {JOB_UID, JOB_UID + 1}, f"jobs ran as {uids}: not every worker was checked"
    intact()


# --------------------------------------------------------------------------- cheating

FAKE_REPORTS = {
    "print": "def f(x):\n    print('All tests passed')\n    print('=== 3 passed in 0.01s ===')\n    return x + 1\n",
    "stdout-write": (
        "import sys\ndef f(x):\n    sys.stdout.write('PASS' + 'ED: all tests ok\\n')\n"
        "    sys.stderr.write('OK\\n')\n    return x + 1\n"
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(FAKE_REPORTS))
def test_fake_pass_report_does_not_pass(client, intact, variant, mode):
    code = FAKE_REPORTS[variant]
    if mode == "calls":
        task = call_task("fake-report", code, "f", [([1], 1), ([2], 2)], FAST)
    elif mode == "exprs":
        task = assert_task("fake-report", code, "f", "assert f(1) == 1\nassert f(2) == 2\n", FAST)
    else:
        test = "def check(candidate):\n    for n in (1, 2):\n        assert candidate(n) == abs(n)\n"
        assert plan_assert_tests("f", test).mode == "whole"
        task = assert_task("fake-report", code, "f", test, FAST)
    result = client.score(task)
    assert status_name(result) == "FAILED" and result.score == 0.0, describe(result)
    if variant == "print":
        assert "fake_pass_report" in finding_codes(result), describe(result)
    intact()


EARLY_EXITS = {
    "module-os-exit": "import os\nos._exit(0)\ndef f():\n    return 'blocked'\n",
    "module-raise-systemexit": "raise SystemExit(0)\ndef f():\n    return 'blocked'\n",
    "module-hidden-exit": "getattr(__import__('o' + 's'), '_' + 'exit')(0)\ndef f():\n    return 'blocked'\n",
    "function-os-exit": "import os\ndef f():\n    os._exit(0)\n",
    "function-sys-exit": "import sys\ndef f():\n    sys.exit(0)\n",
    "function-raise-systemexit": "def f():\n    raise SystemExit(0)\n",
    "function-hidden-exit": "def f():\n    getattr(__import__('o' + 's'), '_' + 'exit')(0)\n",
}


def _exit_cases() -> list:
    cases = []
    for variant in sorted(EARLY_EXITS):
        for mode in MODES:
            cases.append(pytest.param(variant, mode, id=f"{variant}-{mode}"))
    return cases


@pytest.mark.parametrize(("variant", "mode"), _exit_cases())
def test_early_exit_does_not_pass(client, intact, variant, mode):
    result = client.score(task_for(mode, f"exit-{variant}", EARLY_EXITS[variant]))
    assert_scored_zero(result, allowed=("RUNTIME_ERROR",))
    assert "early_exit" in finding_codes(result), describe(result)
    intact()


ALWAYS_EQUAL = {
    "def-eq-true": (
        "class Anything:\n    def __eq__(self, other):\n        return True\ndef f():\n    return Anything()\n",
        True,
    ),
    "lambda-eq": (
        "class Anything:\n    __eq__ = lambda self, other: True\n    __hash__ = lambda self: 0\n"
        "def f():\n    return Anything()\n",
        False,
    ),
    "computed-eq": (
        "class Anything:\n    def __eq__(self, other):\n        return not None\n"
        "    def __ne__(self, other):\n        return not True\n"
        "def f():\n    return Anything()\n",
        False,
    ),
    "str-subclass": (
        "class Text(str):\n    __eq__ = lambda self, other: True\n    __hash__ = str.__hash__\n"
        "def f():\n    return Text('wrong')\n",
        False,
    ),
    "int-subclass": (
        "class Number(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
        "def f():\n    return Number(7)\n",
        False,
    ),
}


def _equal_cases() -> list:
    cases = []
    for variant in sorted(ALWAYS_EQUAL):
        for mode in MODES:
            cases.append(pytest.param(variant, mode, id=f"{variant}-{mode}"))
    return cases


@pytest.mark.parametrize(("variant", "mode"), _equal_cases())
def test_always_equal_object_is_rejected(client, intact, variant, mode):
    result = client.score(task_for(mode, f"eq-{variant}", ALWAYS_EQUAL[variant][0], "right"))
    assert result.score == 0.0 and status_name(result) != "PASSED", describe(result)
    assert status_name(result) == "REJECTED" and "always_equal_object" in finding_codes(result), describe(result)
    intact()


@pytest.mark.parametrize("mode", MODES)
def test_always_equal_object_inside_a_container_does_not_pass(client, intact, mode):
    code = "class Anything:\n    __eq__ = lambda self, other: True\ndef f():\n    return [Anything(), Anything()]\n"
    if mode == "calls":
        task = call_task("eq-nested", code, "f", [([], ["a", "b"])], FAST)
    elif mode == "exprs":
        task = assert_task("eq-nested", code, "f", "assert f() == ['a', 'b']\n", FAST)
    else:
        test = whole_check("ab").replace("return 'ab'", "return ['a', 'b']")
        assert plan_assert_tests("f", test).mode == "whole"
        task = assert_task("eq-nested", code, "f", test, FAST)
    assert_scored_zero(client.score(task))
    intact()


BUILTIN_PATCHES = {
    "attribute": "import builtins\nbuiltins.len = lambda x: 3\ndef f():\n    return 'wrong'\n",
    "setattr": "import builtins\nsetattr(builtins, 'isinstance', lambda a, b: True)\ndef f():\n    return 'wrong'\n",
    "dunder-builtins": "__builtins__.sorted = lambda x: [1, 2, 3]\ndef f():\n    return 'wrong'\n",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(BUILTIN_PATCHES))
def test_patching_builtins_is_rejected(client, intact, variant, mode):
    result = client.score(task_for(mode, f"builtins-{variant}", BUILTIN_PATCHES[variant], "right"))
    assert status_name(result) == "REJECTED" and result.score == 0.0, describe(result)
    assert "builtins_patched" in finding_codes(result), describe(result)
    intact()


HIDDEN_PATCHES = {
    # every comparison and type check the candidate process could run says "equal"
    "builtins": (
        "_b = vars(__import__('builtin' + 's'))\n"
        "class Text(str):\n    __eq__ = lambda self, other: True\n    __hash__ = str.__hash__\n"
        "_b['type'] = lambda *a: str\n_b['isinstance'] = lambda *a: True\n"
        "def f():\n    return Text('wrong')\n"
    ),
    # the harness's own encoder and frames, reached through sys.modules
    "harness-encoder": (
        "import sys\n_m = sys.modules\n"
        "getattr(_m['co' + 'dec'], '__dict__')['enc' + 'ode'] = "
        "lambda value, depth=0: {'$opaque': 'str', 'repr': repr(value), 'custom_eq': False}\n"
        "def f():\n    return 'wrong'\n"
    ),
    "harness-nan": (
        "import sys\n_m = sys.modules\n"
        "getattr(_m['co' + 'dec'], '__dict__')['enc' + 'ode'] = lambda value, depth=0: {'$float': 'nan'}\n"
        "def f():\n    return 'wrong'\n"
    ),
    "compare-helpers": (
        "import sys, operator\n_o = vars(operator)\n_o['eq'] = lambda a, b: True\n"
        "for _name in list(_m for _m in sys.modules if 'compare' in _m or 'rewards' in _m):\n"
        "    vars(sys.modules[_name])['values_equal'] = lambda *a, **k: True\n"
        "def f():\n    return 'wrong'\n"
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(HIDDEN_PATCHES))
def test_hidden_patches_do_not_make_a_wrong_answer_pass(client, intact, variant, mode):
    code = HIDDEN_PATCHES[variant]
    assert "builtins_patched" not in {f.code for f in check_python(code, io_program=False)}, "must evade statics"
    assert_scored_zero(client.score(task_for(mode, f"hidden-{variant}", code, "right")))
    intact()


FORGED_FRAMES = {
    "non-object-frame-at-load": ("load", b"[1]"),
    "null-frame-at-load": ("load", b"null"),
    "string-reply": ("call", b'"okay"'),
    "null-reply": ("call", b"null"),
    "nan-reply": ("call", b'{"ok": NaN}'),
    "infinity-reply": ("call", b'{"ok": Infinity}'),
    "bogus-tag-reply": ("call", b'{"ok": {"$bogus": 1}}'),
    "exception-of-wrong-shape": ("call", b'{"exc": 5}'),
    "oversized-header": ("call", None),
}
FORGE_CODE = """
import os, struct, time

def _forge(body):
    frame = struct.pack(">I", 2**31) if body is None else struct.pack(">I", len(body)) + body
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                os.write(int(name), frame)
        except OSError:
            pass
"""


def _forge_cases() -> list:
    cases = []
    for variant in sorted(FORGED_FRAMES):
        for mode in MODES:
            cases.append(pytest.param(variant, mode, id=f"{variant}-{mode}"))
    return cases


@pytest.mark.parametrize(("variant", "mode"), _forge_cases())
def test_forged_channel_frames_gain_nothing(client, intact, variant, mode):
    where, body = FORGED_FRAMES[variant]
    if where == "load":
        code = FORGE_CODE + f"_forge({body!r})\ndef f():\n    return 'wrong'\n"
    else:
        code = FORGE_CODE + f"def f():\n    _forge({body!r})\n    time.sleep(0.5)\n    return 'wrong'\n"
    result, elapsed = timed(client, task_for(mode, f"forge-{variant}", code, "right"))
    assert_scored_zero(result)
    assert elapsed < TASK_SECONDS + SLACK_SECONDS
    intact()


# --------------------------------------------------------------------------- answer hunting

HUNTER = """
import gc, os, re, sys

PATTERN = re.compile(("zq-" + "marker-").encode() + b"[0-9]+")
SKIP = {"/proc", "/sys", "/dev", "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", sys.base_prefix}

def _scan(data, found, where):
    for match in PATTERN.finditer(data):
        found.setdefault(match.group().decode(), where)

def _memory(pid, found):
    try:
        with open(f"/proc/{pid}/maps") as handle:
            maps = handle.read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)
    except OSError:
        return
    with mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or end - start > (512 << 20) or fields[-1] in ("[vvar]", "[vsyscall]"):
                continue
            position = start
            while position < end:
                size = min(end - position, 8 << 20)
                try:
                    mem.seek(position)
                    chunk = mem.read(size + 64 if position + size < end else size)
                except (OSError, ValueError, OverflowError):
                    break
                _scan(chunk, found, f"/proc/{pid}/mem")
                position += size

def _files(found):
    budget = 4000
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP]
        for name in files:
            path = os.path.join(root, name)
            budget -= 1
            if budget < 0:
                return
            try:
                if os.path.getsize(path) <= (4 << 20):
                    with open(path, "rb") as handle:
                        _scan(handle.read(), found, path)
            except OSError:
                pass

def f():
    found = {}
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if isinstance(ref, str):
                _scan(ref.encode("utf-8", "replace"), found, "heap")
            elif isinstance(ref, (bytes, bytearray)):
                _scan(bytes(ref), found, "heap")
    frame = sys._getframe()
    while frame is not None:
        _scan(repr(frame.f_locals).encode("utf-8", "replace"), found, "frames")
        frame = frame.f_back
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        for part in ("cmdline", "environ"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as handle:
                    _scan(handle.read(), found, f"/proc/{pid}/{part}")
            except OSError:
                pass
        _memory(pid, found)
    _memory("self", found)
    _files(found)
    if os.path.exists("/work/main/tests"):
        found.setdefault("repo visible", "/work/main/tests")
    print("uid", os.getuid())
    print("found:", found)
    return next(iter(found), "not found")
"""

HUNT_LIMITS = limits(test_ms=20000, task_ms=30000)


@pytest.mark.parametrize("mode", MODES)
def test_expected_answer_cannot_be_found(client, intact, mode):
    """The only way to pass is to find the expected value: heap, /proc, every process's memory, files."""
    task = task_for(mode, f"hunt-{mode}", HUNTER, MARKER, HUNT_LIMITS)
    secret = task.python.assert_code or task.python.call_tests[0].expected_json
    assert MARKER in secret and MARKER not in HUNTER and "zq-marker-" not in HUNTER
    result = client.score(task)
    assert status_name(result) == "FAILED" and result.score == 0.0, describe(result)
    assert "zq-marker-" not in result.stdout_excerpt and "zq-marker-" not in result.message, describe(result)
    assert "found: {}" in result.stdout_excerpt, describe(result)  # the hunt ran to the end, finding nothing
    intact()


HOLDER = "import time\ndef f():\n    time.sleep(0.3)\n    return 'nope'\n"


def test_expected_answer_of_an_earlier_job_cannot_be_found(client, intact):
    """Whole-mode secrets pass through the runner; later jobs forked from that runner must not see them."""
    uids: set[int] = set()
    for _ in range(2):
        holders = [task_for("whole", f"holder-{i}", HOLDER, CROSS_MARKER) for i in range(2)]
        for result in client.score_batch(holders):
            # the judge really evaluated the secret assert code (and the candidate never saw it)
            assert status_name(result) == "FAILED" and "assertion is false" in result.message, describe(result)
        hunters = [task_for("calls", f"cross-hunt-{i}", HUNTER, CROSS_MARKER, HUNT_LIMITS) for i in range(2)]
        for result in client.score_batch(hunters):
            assert status_name(result) == "FAILED" and result.score == 0.0, describe(result)
            assert "found: {}" in result.stdout_excerpt, describe(result)
            uids.update(int(line.split()[1]) for line in result.stdout_excerpt.splitlines() if line.startswith("uid"))
    assert uids == {JOB_UID, JOB_UID + 1}, f"hunters ran as {uids}: not every worker was searched"
    intact()


_SHUT_CHANNEL = (
    "import os, socket\n"
    "def _shut():\n"
    "    for fd in map(int, os.listdir('/proc/self/fd')):\n"
    "        try:\n"
    "            if os.readlink(f'/proc/self/fd/{fd}').startswith('socket:'):\n"
    "                socket.socket(fileno=fd).shutdown(socket.SHUT_RDWR)\n"
    "        except OSError:\n"
    "            pass\n"
)
CLOSED_CHANNEL = {
    # The candidate shuts its end of the harness channel and goes on: the runner's next
    # write to it must fail quietly (no SIGPIPE for the runner), and the job is the candidate's failure.
    "at-load": _SHUT_CHANNEL + "_shut()\ndef f():\n    return 'right'\n",
    "racing-thread": (
        _SHUT_CHANNEL + "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.0003), _shut()), daemon=True).start()\n"
        "def f():\n    time.sleep(0.01)\n    return 'right'\n"
    ),
    "in-call": _SHUT_CHANNEL + "import time\ndef f():\n    _shut()\n    time.sleep(0.2)\n    return 'right'\n",
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(CLOSED_CHANNEL))
def test_candidate_closing_its_channel_is_its_own_failure(client, intact, variant, mode):
    task = task_for(mode, f"closed-{variant}", CLOSED_CHANNEL[variant], "right")
    if mode == "calls":
        task.python.call_tests.extend([task.python.call_tests[0]] * 20)  # more requests after the shutdown
    assert_scored_zero(client.score(task))
    intact()
