"""Limits on a sandbox's whole process tree: one cgroup per bwrap worker.

An rlimit binds one process: a job that forked eight children held eight times its
memory limit. So every bwrap sandbox starts inside a cgroup of its own, created by the
service, with a memory limit that follows the job it runs (`tree_limit`), a pids limit
and about one CPU. Both kernel interfaces are handled:

* cgroup v2 (one tree): a child of the service's own cgroup. Its controllers must be
  enabled in the service cgroup's `cgroup.subtree_control`, which the kernel refuses
  while that cgroup has processes of its own (the "no internal processes" rule); then
  the service first moves itself into a leaf, `rft-sandbox-service`, the usual way to
  use a delegated subtree (systemd `Delegate=yes`, a container's cgroup namespace).
* cgroup v1 (a tree per controller, as on this project's VMs): a child of the service's
  own cgroup in each of the memory, pids and cpu hierarchies.

Where neither works (no cgroupfs, no write access, no memory controller) `detect`
returns no tree and says why: the service logs a warning and keeps per-process rlimits
only. It never fails to start for want of a cgroup.

Workers' cgroups are named `rft-sandbox-<service pid>-<n>`: those of a pid that no
longer exists are a crashed service's leftovers, removed at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "rft-sandbox-"
_WORKER_NAME = re.compile(r"rft-sandbox-(\d+)-\d+")
_SERVICE_LEAF = "rft-sandbox-service"
_CONTROLLERS = ("memory", "pids", "cpu")
_PERIOD_US = 100_000
# The first process joins the cgroup (v1: one per hierarchy), then execs the command: so
# every process of a sandbox is inside before any of them exists. A shell rather than
# preexec_fn, which is unsafe in a multithreaded service.
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 111; shift; done; shift; exec "$@"'
_names = itertools.count()

# What a job's tree may use beyond its own limit: the runner's growth after the baseline
# was measured, and the kernel's own memory for the job's processes (page tables, pipes).
MARGIN_BYTES = 64 << 20


def tree_limit(job_bytes: int, baseline: int, tmp_bytes: int) -> int:
    """The cgroup memory limit while a job allowed `job_bytes` runs.

    `baseline` is what the idle worker (runner, init) holds. Files in the sandbox's tmpfs
    are memory charged to the cgroup, and they outlive the processes that wrote them
    until the runner wipes them: so the job's share is at least the tmpfs size, or a job
    could fill the cgroup with files alone and leave the runner as the OOM killer's only
    choice. (Job processes carry oom_score_adj 1000: while one lives, it is the victim.)
    """
    return baseline + max(job_bytes, tmp_bytes) + MARGIN_BYTES


def _set_v1_limit(directory: str, limit: int, previous: int) -> None:
    """v1 wants memory <= memory+swap at every step, so the order depends on the direction."""
    files = [os.path.join(directory, "memory.limit_in_bytes")]
    combined = os.path.join(directory, "memory.memsw.limit_in_bytes")
    if os.path.exists(combined):
        lowering = not previous or limit < previous
        files = [files[0], combined] if lowering else [combined, files[0]]
    for path in files:
        _write(path, str(limit))


class CgroupUnavailable(Exception):
    """No usable cgroup here (the reason says why)."""


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _stat(path: str) -> dict[str, int]:
    pairs = (line.split() for line in _read(path).splitlines())
    return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# Inside a bwrap sandbox: the job's own cgroups (one directory per v1 controller below it),
# bound read-write for the runner, which moves each job process in (sandbox/runner/agent.py)
# before dropping to the job uid.
JOB_CGROUP = "/run/rft-job-cgroup"
_JOB_CONTROLLERS = ("memory", "cpu")
JOB_MARGIN_BYTES = 16 << 20  # the kernel's memory for the job's processes (page tables, pipes)


@dataclass
class WorkerCgroup:
    """One worker's cgroup: a directory per hierarchy (v1) or one directory (v2).

    On v1 its memory and cpu directories have a child, `job`, holding only the job's
    processes, under the job's memory limit and CPU quota: a job at its limit is throttled
    and reclaimed alone, never the runner (with one shared cgroup a memory fork bomb's 64
    processes starved the runner of the quota and it missed its deadlines by seconds). On
    v2 (no processes in a cgroup with children) the worker's cgroup holds both."""

    version: int
    dirs: dict[str, str]  # controller -> directory
    memory_bytes: int = 0  # the limit now in force (0: none yet)
    jobs: dict[str, str] = field(default_factory=dict)  # v1: controller -> the job's cgroup
    job_bytes: int = 0  # the job cgroup's memory limit now in force

    @property
    def paths(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    @property
    def procs_files(self) -> list[str]:
        """Where the sandbox's first process writes its pid before it starts anything."""
        return [os.path.join(path, "cgroup.procs") for path in self.paths]

    def join_argv(self) -> list[str]:
        """The prefix that runs a command inside this cgroup."""
        return ["/bin/sh", "-c", _JOIN, "sh", *self.procs_files, "--"]

    def sandbox_binds(self) -> list[str]:
        """bwrap options that show the runner its cgroup files: the job's cgroup read-write
        (v1), or the worker's OOM-kill counter read-only at the place Docker shows a
        container's own (v2). The runner reads the counter; job processes never can write
        (root-owned files, and they run as the job uid without capabilities)."""
        memory = self.dirs["memory"]
        binds = [a for c, path in sorted(self.jobs.items()) for a in ("--bind", path, f"{JOB_CGROUP}/{c}")]
        if self.version == 2:
            return [*binds, "--ro-bind", os.path.join(memory, "memory.events"), "/sys/fs/cgroup/memory.events"]
        counter = os.path.join(self.jobs.get("memory", memory), "memory.oom_control")
        return [*binds, "--ro-bind", counter, "/sys/fs/cgroup/memory/memory.oom_control"]

    def _memory_file(self, name: str) -> str:
        return os.path.join(self.dirs["memory"], name)

    def set_memory(self, limit: int, job_limit: int) -> None:
        """Apply the worker's limit and (v1) the job's, with no swap on top. Raises OSError
        (EBUSY: more is held than the new limit and nothing could be reclaimed)."""
        if self.version == 2:
            _write(self._memory_file("memory.max"), str(limit))
            self.memory_bytes = limit
            return
        if "memory" in self.jobs and job_limit != self.job_bytes:
            _set_v1_limit(self.jobs["memory"], job_limit, self.job_bytes)
            self.job_bytes = job_limit
        if limit != self.memory_bytes:
            _set_v1_limit(self.dirs["memory"], limit, self.memory_bytes)
            self.memory_bytes = limit

    def memory_in_use(self) -> int:
        """Memory charged to the cgroup that reclaim cannot take back (file cache aside)."""
        stat = _stat(self._memory_file("memory.stat"))
        if self.version == 2:
            return int(_read(self._memory_file("memory.current"))) - stat.get("file", 0)
        usage = int(_read(self._memory_file("memory.usage_in_bytes")))
        return usage - stat.get("total_active_file", 0) - stat.get("total_inactive_file", 0)

    def processes(self) -> list[int]:
        return [int(pid) for pid in _read(os.path.join(self.dirs["memory"], "cgroup.procs")).split()]

    def describe(self) -> dict[str, float]:
        """The limits as the kernel holds them (for tests and logs)."""
        seen: dict[str, float] = {}
        if self.version == 2:
            seen["memory_bytes"] = float(_read(self._memory_file("memory.max")).strip().replace("max", "inf"))
            if "pids" in self.dirs:
                seen["pids"] = float(_read(os.path.join(self.dirs["pids"], "pids.max")).strip().replace("max", "inf"))
            if "cpu" in self.dirs:
                quota, period = _read(os.path.join(self.dirs["cpu"], "cpu.max")).split()
                seen["cpus"] = float("inf") if quota == "max" else int(quota) / int(period)
            return seen
        seen["memory_bytes"] = float(_read(self._memory_file("memory.limit_in_bytes")))
        if "pids" in self.dirs:
            seen["pids"] = float(_read(os.path.join(self.dirs["pids"], "pids.max")).strip().replace("max", "inf"))
        if "cpu" in self.dirs:
            cpu = self.jobs.get("cpu", self.dirs["cpu"])
            quota = int(_read(os.path.join(cpu, "cpu.cfs_quota_us")))
            period = int(_read(os.path.join(cpu, "cpu.cfs_period_us")))
            seen["cpus"] = float("inf") if quota < 0 else quota / period
        return seen

    def remove(self) -> bool:
        """Remove the directories, the job's first; False while processes are still inside."""
        for controller, path in list(self.jobs.items()):
            if not _rmdir(path):
                return False
            del self.jobs[controller]
        return all([_rmdir(path) for path in self.paths])  # a list: try every one


def _rmdir(path: str) -> bool:
    """Remove a cgroup directory; False while processes are still inside (EBUSY)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise
        return False
    return True


@dataclass
class CgroupTree:
    """What both versions share: naming, the live set, and leftover removal."""

    version: int = 0
    live: dict[str, WorkerCgroup] = field(default_factory=dict)

    def parents(self) -> list[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def _make(self, name: str, pids: int, cpus: float) -> WorkerCgroup:
        raise NotImplementedError

    def create(self, pids: int, cpus: float) -> WorkerCgroup:
        name = f"{PREFIX}{os.getpid()}-{next(_names)}"
        group = self._make(name, pids, cpus)
        self.live[name] = group
        return group

    def forget(self, group: WorkerCgroup) -> None:
        for name, known in list(self.live.items()):
            if known is group:
                del self.live[name]

    def remove_leftovers(self) -> int:
        """Remove empty workers' cgroups: a dead service's, and ours that were not removed
        when their worker stopped. Cgroups with processes inside are left alone."""
        removed = 0
        for parent in self.parents():
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                match = _WORKER_NAME.fullmatch(name)
                if match is None:
                    continue
                pid = int(match.group(1))
                if (pid == os.getpid() and name in self.live) or (pid != os.getpid() and not _alive(pid)):
                    try:
                        with contextlib.suppress(FileNotFoundError):
                            os.rmdir(os.path.join(parent, name, "job"))  # v1: the job's cgroup first
                        os.rmdir(os.path.join(parent, name))
                        removed += 1
                    except OSError:
                        continue
                    self.live.pop(name, None)
        return removed

    def probe(self) -> None:
        """Create a cgroup, set its limits, run a process in it, remove it: the hierarchy is
        ours to use."""
        group = self.create(pids=64, cpus=1.0)
        try:
            group.set_memory(256 << 20, 128 << 20)
            joined = subprocess.run([*group.join_argv(), "/bin/true"], capture_output=True, timeout=20)
            if joined.returncode != 0:
                raise CgroupUnavailable(f"cannot move a process into {group.paths}: {joined.stderr.decode()[:200]}")
        finally:
            for _ in range(100):  # the process is gone; the kernel may take a moment to say so
                if group.remove():
                    break
                time.sleep(0.01)
            self.forget(group)


class CgroupV2(CgroupTree):
    def __init__(self, mount: str, own: str) -> None:
        super().__init__(version=2)
        self.parent = os.path.join(mount, own.lstrip("/"))
        self.controllers: list[str] = []

    def parents(self) -> list[str]:
        return [self.parent]

    def describe(self) -> str:
        return f"cgroup v2 under {self.parent}: {', '.join(self.controllers)}"

    def prepare(self) -> None:
        try:
            available = _read(os.path.join(self.parent, "cgroup.controllers")).split()
        except OSError as exc:
            raise CgroupUnavailable(f"cgroup v2 at {self.parent}: {exc.strerror}") from None
        if "memory" not in available:
            raise CgroupUnavailable(f"cgroup v2 at {self.parent}: no memory controller (has: {' '.join(available)})")
        self.controllers = [c for c in _CONTROLLERS if c in available]
        control = os.path.join(self.parent, "cgroup.subtree_control")
        enable = " ".join(f"+{c}" for c in self.controllers if c not in _read(control).split())
        if not enable:
            return
        try:
            _write(control, enable)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                why = f"cgroup v2 at {self.parent}: cannot enable controllers: {exc.strerror}"
                raise CgroupUnavailable(why) from None
            leaf = os.path.join(self.parent, _SERVICE_LEAF)
            try:
                os.makedirs(leaf, exist_ok=True)
                _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
                _write(control, enable)
            except OSError as again:
                raise CgroupUnavailable(
                    f"cgroup v2 at {self.parent}: other processes share the service's cgroup: {again.strerror}"
                ) from None

    def _make(self, name: str, pids: int, cpus: float) -> WorkerCgroup:
        path = os.path.join(self.parent, name)
        os.mkdir(path)
        try:
            if "pids" in self.controllers:
                _write(os.path.join(path, "pids.max"), str(pids))
            if "cpu" in self.controllers:
                _write(os.path.join(path, "cpu.max"), f"{round(cpus * _PERIOD_US)} {_PERIOD_US}")
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _write(os.path.join(path, "memory.swap.max"), "0")
        except OSError:
            os.rmdir(path)
            raise
        return WorkerCgroup(2, {c: path for c in self.controllers})


class CgroupV1(CgroupTree):
    def __init__(self, dirs: dict[str, str]) -> None:
        super().__init__(version=1)
        if "memory" not in dirs:
            raise CgroupUnavailable("no cgroup v1 memory hierarchy")
        self.dirs = dirs  # controller -> the service's own cgroup in that hierarchy

    def parents(self) -> list[str]:
        return sorted(set(self.dirs.values()))

    def describe(self) -> str:
        return "cgroup v1: " + ", ".join(f"{c} under {d}" for c, d in sorted(self.dirs.items()))

    def _make(self, name: str, pids: int, cpus: float) -> WorkerCgroup:
        group = WorkerCgroup(1, {})
        try:
            for controller, parent in self.dirs.items():
                path = os.path.join(parent, name)
                os.mkdir(path)
                group.dirs[controller] = path
            for controller in _JOB_CONTROLLERS:
                if controller in group.dirs:
                    group.jobs[controller] = os.path.join(group.dirs[controller], "job")
                    os.mkdir(group.jobs[controller])
            if "pids" in group.dirs:
                _write(os.path.join(group.dirs["pids"], "pids.max"), str(pids))
            if "cpu" in group.jobs:  # the job's quota; the runner, outside it, is never throttled by it
                _write(os.path.join(group.jobs["cpu"], "cpu.cfs_period_us"), str(_PERIOD_US))
                _write(os.path.join(group.jobs["cpu"], "cpu.cfs_quota_us"), str(round(cpus * _PERIOD_US)))
        except OSError:
            group.remove()
            raise
        return group


def _cgroup_mounts(root: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, root of the mount within its hierarchy, mount point, options) under `root`."""
    mounts = []
    for line in _read("/proc/self/mountinfo").splitlines():
        fields = line.split()
        tail = fields.index("-")
        kind, options = fields[tail + 1], set(fields[tail + 3].split(","))
        point = fields[4]
        if kind in ("cgroup", "cgroup2") and (point == root or point.startswith(root.rstrip("/") + "/")):
            mounts.append((kind, fields[3], point, options))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """The service's cgroup per controller ("" for v2's unified tree)."""
    own = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    return own


def _inside(mount_root: str, point: str, path: str) -> str | None:
    """Where the cgroup `path` is under a mount of its hierarchy; None if out of its view."""
    if path != mount_root and not path.startswith(mount_root.rstrip("/") + "/"):
        return None
    return os.path.normpath(os.path.join(point, path[len(mount_root) :].lstrip("/")))


def _v2(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str]) -> CgroupV2:
    for kind, mount_root, point, _ in mounts:
        if kind == "cgroup2" and "" in own:
            where = _inside(mount_root, point, own[""])
            if where is not None:
                tree = CgroupV2(point, os.path.relpath(where, point))
                tree.prepare()
                return tree
    raise CgroupUnavailable("no usable cgroup2 mount")


def _v1(mounts: list[tuple[str, str, str, set[str]]], own: dict[str, str]) -> CgroupV1:
    dirs = {}
    for kind, mount_root, point, options in mounts:
        for controller in _CONTROLLERS:
            if kind == "cgroup" and controller in options and controller in own and controller not in dirs:
                where = _inside(mount_root, point, own[controller])
                if where is not None and os.access(where, os.W_OK):
                    dirs[controller] = where
    return CgroupV1(dirs)


def detect(root: str = "/sys/fs/cgroup") -> tuple[CgroupTree | None, str]:
    """The usable cgroup tree here (v2 preferred), or None and why not."""
    reasons = []
    try:
        mounts, own = _cgroup_mounts(root), _own_cgroups()
    except OSError as exc:
        return None, f"rlimits per process only: cannot read this process's cgroups ({exc})"
    for make in (_v2, _v1):
        try:
            tree = make(mounts, own)
            tree.probe()
            return tree, tree.describe()
        except (CgroupUnavailable, OSError) as exc:
            reasons.append(str(exc))
    return None, f"rlimits per process only (no cgroup under {root}: {'; '.join(reasons)})"
