"""The Triton lanes: pools of runners that imported torch and triton, started on first use.

Triton runners import torch and triton once (about a second and 300 MiB each), so they
are pools apart from the lean Python/SQL workers, started only when the first Triton
job arrives: a service that never sees one never pays for them. Each runner gets the
service's torch/triton mounted read-only and serves jobs on one device (the CPU
interpreter, or a GPU: `--triton-device cuda`).

References run on sandboxes of their own (one worker), never on a runner that later
forks a candidate or compile job: a runner reads the report of every job it runs, and
each job's process is a fork of it, so a candidate forked from the runner that had read
the reference's outputs could find them in the heap it inherited.
"""

from __future__ import annotations

from sandbox.backends.policy import SandboxPolicy
from sandbox.host import Host
from sandbox.lanes import PoolLane
from sandbox.steps import LanguageUnavailable
from sandbox.triton.packages import PackagesMissing, package_mounts
from sandbox.triton.plan import TritonDevice

CANDIDATES, COMPILER, REFERENCES = "triton", "triton-compile", "triton-reference"


def triton_policy(base: SandboxPolicy, engine: str, mode: str, workers: int) -> SandboxPolicy:
    """The service's policy, plus torch/triton mounts and the runner's Triton mode; on a
    GPU, one GPU per worker (only these sandboxes see any)."""
    try:
        policy = base.with_mounts(*package_mounts()).with_runner_options("--triton", mode)
    except PackagesMissing as exc:
        raise LanguageUnavailable(f"this server cannot run Triton tasks: {exc}") from None
    if mode == "cuda":
        if engine != "docker":
            raise LanguageUnavailable("Triton on a GPU needs the docker backend (it passes the GPUs through)")
        policy = policy.with_gpus(workers)
    return policy


def triton_lanes(host: Host, device: TritonDevice, workers: int) -> dict[str, PoolLane]:
    """Candidates; on the CPU, the compiler of what the interpreter ran; the references."""

    def pool(name: str, mode: str, size: int) -> PoolLane:
        return host.lazy_pool(name, size, lambda: triton_policy(host.policy, host.backend.name, mode, size))

    lanes = {CANDIDATES: pool(CANDIDATES, device.kind, workers), REFERENCES: pool(REFERENCES, device.kind, 1)}
    if not device.gpu:
        lanes[COMPILER] = pool(COMPILER, "compile", workers)
    return lanes
