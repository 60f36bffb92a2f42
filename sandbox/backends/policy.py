"""What a sandbox is, as one value: mounts, uids, capabilities, limits, the runner's command.

In the spirit of nsjail's config: everything that makes a sandbox what it is lives here,
once, and each backend (`sandbox.backends.base.Backend`) only translates it: bubblewrap
into its argv, Docker into a container's create() arguments. A sandbox of another kind
(the Triton runners: more mounts, a runner option, GPUs) is a derived value
(`with_mounts`, `with_runner_options`, `with_gpus`), never a configured copy of a backend.

The policy is an argument of `Backend.start`, not of a backend's constructor: one service
runs one engine (one Docker client, one cgroup tree, each found and checked once) and
several kinds of sandbox on it at a time (the Python/SQL workers; the Triton interpreter,
compiler and reference runners). Built with a policy, a backend would be copied once per
kind, and the copies would share (or duplicate) the engine state; passed per start, the
engine is one object and the kinds are values, each carried by the pool that starts its
workers (`sandbox.pool.WorkerPool.policy`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.config import ServiceConfig

RUNNER_DIR = Path(__file__).resolve().parent.parent / "runner"
# The wire (`sandbox.wire`) is mounted next to the runner's directory: the runner finds it
# as its sibling `wire`, in a sandbox as in the repository.
WIRE_DIR = RUNNER_DIR.parent / "wire"
# Where engine packages (duckdb; torch and triton) are bound inside: the runner is told it
# in its argv (`--packages`), and `Mount.package` places a package there.
PACKAGES = "/opt/rft-packages"

# How the runner's interpreter starts: isolated (no env vars, no user site, no script dir
# on sys.path), writing no bytecode, and reading none either: measured here, a runner
# loaded from .pyc files (say, compiled by `pip install`) makes every forked job ~1.5 ms
# slower than one compiled from source at start-up.
RUNNER_FLAGS = ("-I", "-B", "-X", "pycache_prefix=/nonexistent")


@dataclass(frozen=True)
class Mount:
    """The host's `source` at `target` inside, read-only: a sandbox writes nowhere but its tmpfs."""

    source: str
    target: str

    @classmethod
    def package(cls, source: str | Path) -> Mount:
        """An engine package (a top-level directory, module or .dist-info) where the runner imports it from."""
        return cls(str(source), f"{PACKAGES}/{Path(source).name}")


@dataclass(frozen=True)
class JobRlimits:
    """The per-process rlimits every job runs under (the runner sets them in each job's fork)."""

    max_processes: int
    max_open_files: int
    max_file_bytes: int

    @classmethod
    def of(cls, config: ServiceConfig) -> JobRlimits:
        return cls(config.max_processes, config.max_open_files, config.max_file_bytes)

    def job_limits(self) -> dict[str, int]:
        """As a job frame's `limits` carry them."""
        return dataclasses.asdict(self)


def _default_rlimits() -> JobRlimits:
    return JobRlimits.of(ServiceConfig())  # the service's defaults are the one source


@dataclass(frozen=True)
class RunnerCommand:
    """How the runner agent starts inside; the interpreter is the backend's (the host's
    for bubblewrap, the image's for Docker)."""

    code: Mount = Mount(str(RUNNER_DIR), "/opt/rft-runner")  # the runner's source, read-only
    wire: Mount = Mount(str(WIRE_DIR), "/opt/wire")  # the messages it shares with the service
    flags: tuple[str, ...] = RUNNER_FLAGS
    options: tuple[str, ...] = ()  # what this kind of runner serves, e.g. ("--triton", "cpu")

    def interpreter_args(self) -> list[str]:
        """The interpreter's arguments up to the agent's script."""
        return [*self.flags, f"{self.code.target}/agent.py"]

    def agent_args(self, workdir: str, job_uid: int | None) -> list[str]:
        """The agent's own arguments; `job_uid` None: jobs keep the runner's uid."""
        uid = [] if job_uid is None else ["--job-uid", str(job_uid)]
        return ["--workdir", workdir, "--packages", PACKAGES, *uid, *self.options]


@dataclass(frozen=True)
class SandboxPolicy:
    mounts: tuple[Mount, ...] = ()  # beyond the system and the runner: databases, engine packages
    runner: RunnerCommand = RunnerCommand()
    job_uid_base: int = 61000  # worker slot n runs its jobs as uid job_uid_base + n
    # The only capabilities the runner keeps (to drop each job to its uid and kill it); jobs keep none.
    capabilities: tuple[str, ...] = ("SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER", "CHOWN")
    hostname: str = "sandbox"
    environment: tuple[tuple[str, str], ...] = (("PATH", "/usr/local/bin:/usr/bin:/bin"), ("LANG", "C.UTF-8"))
    workdir: str = "/tmp"  # a size-capped tmpfs, the only writable place, and the runner's working directory
    tmp_bytes: int = 256 << 20
    pids_limit: int = 256  # processes and threads of one sandbox, all uids together
    cpus: float = 1.0  # CPU time of one sandbox, as a number of CPUs
    # The sandbox's memory before its first job, where the engine bounds it at creation
    # (Docker); then each job's (`sandbox.backends.cgroups.tree_limit`).
    memory_bytes: int = 2 << 30
    gpus: int = 0  # GPUs on this host: worker slot n gets GPU n % gpus alone
    rlimits: JobRlimits = field(default_factory=_default_rlimits)

    @property
    def binds(self) -> tuple[Mount, ...]:
        """Every read-only bind, the runner's and the wire's first."""
        return (self.runner.code, self.runner.wire, *self.mounts)

    def job_uid(self, slot: int) -> int:
        return self.job_uid_base + slot

    def with_mounts(self, *mounts: Mount) -> SandboxPolicy:
        return dataclasses.replace(self, mounts=(*self.mounts, *mounts))

    def with_runner_options(self, *options: str) -> SandboxPolicy:
        runner = dataclasses.replace(self.runner, options=(*self.runner.options, *options))
        return dataclasses.replace(self, runner=runner)

    def with_gpus(self, gpus: int) -> SandboxPolicy:
        return dataclasses.replace(self, gpus=gpus)


def policy_for(config: ServiceConfig) -> SandboxPolicy:
    """The service's policy: the settings it takes from the service's configuration."""
    return SandboxPolicy(rlimits=JobRlimits.of(config), job_uid_base=config.job_uid_base)
