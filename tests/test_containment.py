"""Containment per job: limits on a job's whole process tree, and nothing that survives it.

The aggregate tests run on both backends (the session `client`): a job's processes
together get its memory limit (a cgroup per worker on bwrap, the container's own limits
on Docker), a tree that exceeds it is MEMORY_LIMIT (the kernel's OOM-kill count, not
the candidate's word), and the trusted runner survives. The leftover tests use a server
with one worker, so that a first job that plants something and a second job that looks
for it run in the same sandbox (both print the sandbox's identity to prove it).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rewards.model import Status
from rewards.python import score_python
from sandbox.backends import cgroups
from sandbox.backends.bwrap import BwrapBackend
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.wire.codec import encode
from tests.conftest import start_server
from tests.helpers import MiB, assert_task, call_task, healthy_task, limits, status_name
from tests.test_hostile import FORK_BOMB
from trainer_plugin.client import ClientOptions, SandboxClient

ROOMY = limits(test_ms=20_000, task_ms=30_000, memory=512 * MiB)


@pytest.fixture
def intact(client, assert_healthy):
    """Checker: normal tasks still pass and no sandbox worker (no runner) died."""
    failures = client.stats().worker_failures

    def check() -> None:
        assert_healthy()
        assert client.stats().worker_failures == failures, "a sandbox worker died: the runner was OOM-killed"

    return check


def describe(result) -> str:
    return f"{status_name(result)} score={result.score} message={result.message!r}"


# --------------------------------------------------------------------------- aggregate memory

FORKED_HOARD = """
import os, time

def f():
    children = []
    for _ in range(8):
        pid = os.fork()
        if pid == 0:
            hoard = b"x" * (200 << 20)  # written, so resident: 200 MiB per child
            time.sleep(3)
            os._exit(0 if hoard else 1)
        children.append(pid)
    finished = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        finished += os.waitstatus_to_exitcode(status) == 0
    return finished
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_children_share_the_jobs_memory_limit(client, intact, mode):
    """Eight children of 200 MiB each under a 512 MiB limit: 1.6 GiB was PASSED before."""
    if mode == "calls":
        task = call_task("forked-hoard", FORKED_HOARD, "f", [([], 8)], ROOMY)
    else:
        test = "def check(candidate):\n    def expected():\n        return 8\n    assert candidate() == expected()\n"
        task = assert_task("forked-hoard-whole", FORKED_HOARD, "f", test, ROOMY)
    result = client.score(task)
    assert status_name(result) == "MEMORY_LIMIT" and result.score == 0.0, describe(result)
    intact()


HONEST_PAIR = """
import os, time

def f():
    pid = os.fork()
    if pid == 0:
        hoard = b"x" * (100 << 20)
        time.sleep(0.5)
        os._exit(0 if hoard else 1)
    mine = b"y" * (100 << 20)
    time.sleep(0.5)
    _, status = os.waitpid(pid, 0)
    return [os.waitstatus_to_exitcode(status), len(mine) >> 20]
"""


def test_honest_job_in_two_processes_passes(client, intact):
    result = client.score(call_task("honest-pair", HONEST_PAIR, "f", [([], [0, 100])], ROOMY))
    assert status_name(result) == "PASSED" and result.score == 1.0, describe(result)
    intact()


BIG_ASK = """
import os, time

def f():
    children = []
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            hoard = b"x" * (750 << 20)
            time.sleep(1)
            os._exit(0 if hoard else 1)
        children.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
"""


def test_job_gets_the_memory_it_asked_for(client, intact):
    """3 x 750 MiB under a 3 GiB limit: a worker's memory follows the job (Docker capped it at 2 GiB)."""
    lim = limits(test_ms=20_000, task_ms=30_000, memory=3072 * MiB)
    result = client.score(call_task("big-ask", BIG_ASK, "f", [([], [0, 0, 0])], lim))
    assert status_name(result) == "PASSED", describe(result)
    # and the next job, at the default limit, is held to it again
    result = client.score(call_task("forked-hoard-after", FORKED_HOARD, "f", [([], 8)], ROOMY))
    assert status_name(result) == "MEMORY_LIMIT", describe(result)
    intact()


FILES_THEN_MEMORY = """
import os, time

def f():
    chunk = b"x" * (1 << 20)
    for i in range(15):  # 240 MiB of files in the sandbox's tmpfs: memory the job keeps
        try:
            with open(f"fill-{i}", "wb") as handle:
                for _ in range(16):
                    handle.write(chunk)
        except OSError:
            break
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            hoard = b"y" * (50 << 20)  # within the per-process limit; not with the files
            time.sleep(2)
            os._exit(0 if hoard else 1)
        children.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
"""


def test_files_count_against_the_job_not_the_runner(client, intact):
    """Files in the sandbox's tmpfs are memory too: 240 MiB of them and four children of 50 MiB
    under a 128 MiB limit. The job's processes are killed, never the runner (whose death would
    be a SANDBOX_ERROR), though the files stay until the runner wipes them."""
    lim = limits(test_ms=15_000, task_ms=20_000, memory=128 * MiB)
    result = client.score(call_task("files-then-memory", FILES_THEN_MEMORY, "f", [([], [0, 0, 0, 0])], lim))
    assert status_name(result) == "MEMORY_LIMIT" and result.score == 0.0, describe(result)
    intact()


MEMORY_FORK_BOMB = """
import os, time

def f():
    hoard = []
    while True:
        try:
            if os.fork() == 0:
                hoard.append(b"x" * (32 << 20))
        except OSError:
            time.sleep(0.01)
"""


def test_memory_fork_bomb_is_memory_limit(client, intact):
    """64 processes of 32 MiB and more: stopped by the tree's limit, not the host's memory."""
    lim = limits(test_ms=4000, task_ms=6000, memory=512 * MiB)
    result = client.score(call_task("memory-fork-bomb", MEMORY_FORK_BOMB, "f", [([], None)], lim))
    assert status_name(result) == "MEMORY_LIMIT" and result.score == 0.0, describe(result)
    intact()


def test_fork_bomb_is_contained(client, intact):
    lim = limits(test_ms=3000, task_ms=4000)
    result = client.score(call_task("fork-bomb", FORK_BOMB, "f", [([], None)], lim))
    assert status_name(result) not in ("PASSED", "SANDBOX_ERROR") and result.score == 0.0, describe(result)
    intact()


SPINNERS = """
import os, resource, time

def f():
    started = time.monotonic()
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            end = time.monotonic() + 2
            while time.monotonic() < end:
                pass
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime + usage.ru_stime
    return "one cpu" if cpu <= 1.3 * wall else f"{cpu:.2f} CPU seconds in {wall:.2f} s"
"""


def test_spinning_children_get_one_cpu(client, intact):
    """CPU accounting, not timing: four spinning children together used at most ~1 CPU."""
    result = client.score(call_task("spinners", SPINNERS, "f", [([], "one cpu")], ROOMY))
    assert status_name(result) == "PASSED", describe(result)
    intact()


# --------------------------------------------------------------------------- nothing survives a job

PRELUDE = """
import ctypes, json, os, platform, socket
libc = ctypes.CDLL(None, use_errno=True)
KEY = 0x7F7E57
NAME = b"rft-left-behind"
ADD_KEY, KEYCTL = {"x86_64": (248, 250), "aarch64": (217, 219)}[platform.machine()]

def sandbox_identity():
    with open("/proc/1/stat") as handle:  # the sandbox's first process and when it started
        return handle.read().rsplit(")", 1)[1].split()[19]

def writable_dirs():
    # every directory on a writable mount (proc, sysfs and cgroup trees aside)
    tops = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            kind = fields[fields.index("-") + 1]
            if "rw" in fields[5].split(",") and kind not in ("proc", "sysfs", "cgroup", "cgroup2", "devpts"):
                tops.append(fields[4])
    for top in tops:
        for root, dirs, _ in os.walk(top):
            dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(root, d))]
            yield root
"""

PLANT_SEEK = {
    "sysv-ipc": (
        """
def f():
    made = [
        libc.shmget(KEY, 1 << 20, 0o1000 | 0o666), libc.shmget(0, 1 << 20, 0o1000 | 0o600),
        libc.msgget(KEY, 0o1000 | 0o666), libc.msgget(0, 0o1000 | 0o600),
        libc.semget(KEY, 1, 0o1000 | 0o666), libc.semget(0, 1, 0o1000 | 0o600),
    ]
    return "planted" if min(made) >= 0 else f"blocked {made}"
""",
        """
def f():
    found = []
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as handle:
            found += [f"{kind}: {line.split()[:2]}" for line in handle.read().splitlines()[1:]]
    if libc.shmget(KEY, 0, 0o666) >= 0 or libc.msgget(KEY, 0o666) >= 0 or libc.semget(KEY, 0, 0o666) >= 0:
        found.append("the key is still there")
    return "clean" if not found else "; ".join(found)
""",
    ),
    "posix-mqueue": (
        """
def f():
    libc.mq_open.restype = ctypes.c_int
    made = libc.mq_open(b"/" + NAME, os.O_CREAT | os.O_RDWR, 0o666, None) >= 0
    if os.path.isdir("/dev/mqueue"):
        try:
            os.close(os.open(b"/dev/mqueue/file-" + NAME, os.O_CREAT | os.O_RDWR, 0o666))
            made = True
        except OSError:
            pass
    return "planted" if made else "blocked"
""",
        """
def f():
    libc.mq_open.restype = ctypes.c_int
    found = [name for name in (b"/" + NAME, b"/file-" + NAME) if libc.mq_open(name, os.O_RDONLY) >= 0]
    if os.path.isdir("/dev/mqueue"):
        found += os.listdir("/dev/mqueue")
    return "clean" if not found else f"found {found}"
""",
    ),
    "keyrings": (
        """
def f():
    made = []
    for ring in (-3, -4, -5):  # session, user and user-session keyrings
        if libc.syscall(ADD_KEY, b"user", NAME, b"secret", 6, ctypes.c_int(ring)) >= 0:
            made.append(ring)
    return "planted" if made else "blocked"
""",
        """
def f():
    found = []
    for ring in (-3, -4, -5):
        if libc.syscall(KEYCTL, 10, ctypes.c_int(ring), b"user", NAME, 0) >= 0:  # KEYCTL_SEARCH
            found.append(ring)
    return "clean" if not found else f"found in keyrings {found}"
""",
    ),
    "files": (
        """
def f():
    made = []
    for folder in writable_dirs():
        try:
            with open(os.path.join(folder, NAME.decode()), "w") as handle:
                handle.write("x")
            made.append(folder)
        except OSError:
            pass
    return "planted" if made else "blocked"
""",
        """
def f():
    found = [folder for folder in writable_dirs() if os.path.lexists(os.path.join(folder, NAME.decode()))]
    return "clean" if not found else f"found in {found}"
""",
    ),
    "sockets": (
        """
def f():
    made = []
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(b"\\0" + NAME)
    unix.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 47031))
    tcp.listen()
    globals()["keep"] = (unix, tcp)
    return "planted"
""",
        """
def f():
    found = []
    for family, address in ((socket.AF_UNIX, b"\\0" + NAME), (socket.AF_INET, ("127.0.0.1", 47031))):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(address)
                found.append(str(address))
            except OSError:
                pass
    return "clean" if not found else f"still listening: {found}"
""",
    ),
    "hostname": (
        """
def f():
    changed = libc.sethostname(NAME, len(NAME)) == 0 or libc.setdomainname(NAME, len(NAME)) == 0
    return "planted" if changed else "blocked"
""",
        """
def f():
    with open("/proc/sys/kernel/domainname") as handle:
        domain = handle.read().strip()
    return "clean" if socket.gethostname() == "sandbox" and domain != NAME.decode() else "renamed"
""",
    ),
}
MUST_PLANT = {"sysv-ipc", "files", "sockets"}  # allowed to a job; what matters is that they are gone after it


def _with_identity(body: str) -> str:
    """The candidate prints the sandbox's identity before doing its work."""
    return PRELUDE + body.replace("def f():\n", "def f():\n    print('sandbox', sandbox_identity())\n", 1)


@pytest.fixture(scope="module")
def solo(backend_name: str) -> Iterator[SandboxClient]:
    """One worker: consecutive jobs run in the same sandbox."""
    embedded = start_server(backend_name, workers=1)
    client = SandboxClient(ClientOptions(embedded.target, timeout=120))
    yield client
    client.close()
    embedded.stop()


@pytest.mark.parametrize("channel", sorted(PLANT_SEEK))
def test_nothing_a_job_leaves_reaches_the_next_job(solo, channel):
    plant, seek = PLANT_SEEK[channel]
    lim = limits(test_ms=8000, task_ms=10_000)
    first = solo.score(call_task(f"plant-{channel}", _with_identity(plant), "f", [([], "planted")], lim))
    assert status_name(first) in ("PASSED", "FAILED"), describe(first)
    if channel in MUST_PLANT:
        assert status_name(first) == "PASSED", f"the plant did not work, the test proves nothing: {describe(first)}"
    second = solo.score(call_task(f"seek-{channel}", _with_identity(seek), "f", [([], "clean")], lim))
    sandboxes = [re.findall(r"sandbox (\d+)", r.stdout_excerpt) for r in (first, second)]
    assert sandboxes[0] and sandboxes[0] == sandboxes[1], f"the jobs ran in different sandboxes: {sandboxes}"
    assert status_name(second) == "PASSED", describe(second)


def test_sysv_ipc_is_removed_after_every_job(solo):
    """Round after round, what one job leaves is gone before the next: not only once per worker."""
    plant, seek = PLANT_SEEK["sysv-ipc"]
    lim = limits(test_ms=8000, task_ms=10_000)
    for round_ in range(3):
        first = solo.score(call_task(f"plant-{round_}", _with_identity(plant), "f", [([], "planted")], lim))
        second = solo.score(call_task(f"seek-{round_}", _with_identity(seek), "f", [([], "clean")], lim))
        assert status_name(first) == "PASSED" and status_name(second) == "PASSED", describe(second)


# --------------------------------------------------------------------------- bwrap's cgroups


def test_bwrap_workers_run_in_cgroups_that_are_removed_at_stop():
    backend = BwrapBackend()
    backend.check()
    if backend.cgroup_tree is None:
        pytest.skip(f"no usable cgroup here: {backend.containment}")
    embedded = EmbeddedServer(ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=None), backend).start()
    try:
        client = SandboxClient(ClientOptions(embedded.target, timeout=60))
        assert status_name(client.score(healthy_task())) == "PASSED"
        groups = backend.cgroup_tree.live
        assert len(groups) == 2, groups
        for group in groups.values():
            limits_seen = group.describe()
            assert limits_seen["memory_bytes"] >= 512 * MiB, limits_seen
            assert limits_seen["pids"] == embedded.server.pool.policy.pids_limit, limits_seen
            assert limits_seen["cpus"] == pytest.approx(embedded.server.pool.policy.cpus), limits_seen
            assert group.processes(), "the worker's processes are not in its cgroup"
        paths = [path for group in groups.values() for path in group.paths]
        client.close()
    finally:
        embedded.stop()
    assert not any(os.path.exists(path) for path in paths), "cgroups outlived their workers"


def test_bwrap_removes_a_crashed_services_cgroups_at_start():
    backend = BwrapBackend()
    backend.check()
    if backend.cgroup_tree is None:
        pytest.skip(f"no usable cgroup here: {backend.containment}")
    stray = [os.path.join(parent, f"{cgroups.PREFIX}{_dead_pid()}-0") for parent in backend.cgroup_tree.parents()]
    for path in stray:
        os.mkdir(path)
    embedded = EmbeddedServer(ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None), backend).start()
    embedded.stop()
    assert not any(os.path.exists(path) for path in stray)


def _dead_pid() -> int:
    """A pid no process has right now (a crashed service's)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_bwrap_without_a_usable_cgroup_degrades_to_rlimits(tmp_path, caplog):
    """No cgroup to be had: a warning, the containment says so, and jobs still run."""
    backend = BwrapBackend(cgroup_root=str(tmp_path / "no-cgroups"))
    backend.check()
    assert backend.cgroup_tree is None and backend.containment.startswith("rlimits"), backend.containment
    assert any("cgroup" in record.getMessage() for record in caplog.records)
    embedded = EmbeddedServer(ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None), backend).start()
    try:
        client = SandboxClient(ClientOptions(embedded.target, timeout=60))
        assert status_name(client.score(healthy_task())) == "PASSED"
        client.close()
    finally:
        embedded.stop()


# --------------------------------------------------------------------------- cgroup v2, on a fake tree


def _fake_v2(root: Path, own: str, controllers: str = "cpu memory pids") -> Path:
    """A cgroup2 mount as the kernel presents it, enough for the module's reads and writes."""
    group = root / own.strip("/")
    group.mkdir(parents=True)
    (group / "cgroup.controllers").write_text(controllers + "\n")
    (group / "cgroup.subtree_control").write_text("")
    (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    return group


def test_cgroup_v2_worker_gets_memory_pids_and_cpu(tmp_path):
    own = _fake_v2(tmp_path, "/system.slice/rft.service")
    tree = cgroups.CgroupV2(str(tmp_path), "/system.slice/rft.service")
    tree.prepare()
    assert set((own / "cgroup.subtree_control").read_text().split()) >= {"+memory", "+pids", "+cpu"}
    group = tree.create(pids=128, cpus=0.5)
    path = Path(group.paths[0])
    assert path.parent == own
    assert (path / "pids.max").read_text() == "128"
    assert (path / "cpu.max").read_text() == "50000 100000"
    group.set_memory(700 * MiB, 600 * MiB)
    assert (path / "memory.max").read_text() == str(700 * MiB)
    assert group.procs_files == [str(path / "cgroup.procs")]
    assert group.sandbox_binds() == ["--ro-bind", str(path / "memory.events"), "/sys/fs/cgroup/memory.events"]


def test_cgroup_v2_without_the_memory_controller_is_unusable(tmp_path):
    _fake_v2(tmp_path, "/user.slice", controllers="cpu pids")
    with pytest.raises(cgroups.CgroupUnavailable, match="memory"):
        cgroups.CgroupV2(str(tmp_path), "/user.slice").prepare()


# --------------------------------------------------------------------------- the verdict


@dataclass
class _Expect:
    name: str
    op: str = "eq"
    expected: Any = 1
    tolerance: float = 0.0


def _score(meta: dict[str, Any], records: list[dict[str, Any]]):
    return score_python([_Expect(f"t{i}") for i in range(3)], records, meta, [], 1e-9, 0.0, whole=False)


KILLED_RECORDS = [
    {"t": "test", "i": 0, "kind": "value", "value": encode(1)},
    {"t": "test", "i": 1, "kind": "crash", "signal": 9},
    {"t": "test", "i": 2, "kind": "value", "value": encode(2)},
    {"t": "done"},
]


def test_kernel_oom_kills_make_a_failing_result_memory_limit():
    verdict = _score({"ending": "closed", "oom_kills": 2}, KILLED_RECORDS)
    assert verdict.status is Status.MEMORY_LIMIT and verdict.score == pytest.approx(1 / 3)
    assert [t.status for t in verdict.tests] == [Status.PASSED, Status.MEMORY_LIMIT, Status.FAILED]
    assert "memory limit" in verdict.message
    # without the kernel's count, the same records are a crash
    plain = _score({"ending": "closed", "oom_kills": 0}, KILLED_RECORDS)
    assert plain.status is Status.RUNTIME_ERROR and plain.tests[1].status is Status.RUNTIME_ERROR


def test_a_job_that_passed_despite_an_oom_kill_still_passed():
    records = [{"t": "test", "i": i, "kind": "value", "value": encode(1)} for i in range(3)] + [{"t": "done"}]
    assert _score({"ending": "closed", "oom_kills": 1}, records).status is Status.PASSED
