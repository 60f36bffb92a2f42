"""Isolation with a real Docker Engine: one long-lived, hardened container per worker.

Each container runs the same runner agent as the bubblewrap backend (as its pid 1),
driven over the container's attached stdin/stdout, so pools, fork-per-job, recycling
and retries are shared. Hardening on every container: no network, read-only root, a
size-capped tmpfs as the only writable place, no /dev/shm (private IPC without a
mount), all capabilities dropped except the six the runner needs to drop each job to
an unprivileged uid and to kill it, no-new-privileges, the job syscall filter
(`sandbox.backends.seccomp`: Docker's default profile, tightened), memory / CPU / PID
limits, no host mount but the read-only runner, no Docker socket inside. Candidate
code runs as uid 61000+slot with no capabilities.

A container's memory limit follows the job it runs (`sandbox.backends.cgroups.tree_limit`:
what the idle runner holds, plus the job's limit, plus a margin), so the limit holds for
the job's whole process tree; it is changed (`docker update`, ~15 ms) only when a job's
limit differs from the last one's. Candidates carry oom_score_adj 1000, so the kernel's
OOM killer takes them, not the runner, which reads the kill count from the container's
own cgroup (read-only under /sys/fs/cgroup). An engine that cannot update a running
container keeps the limit it was created with, and the per-process rlimits.

Containers carry labels so that leftovers of a crashed service are removed on
start-up; they are removed on shutdown too. `runtime` (e.g. "runsc" for gVisor) is
passed through to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from sandbox.backends import seccomp
from sandbox.backends.base import RUNNER_DIR, RUNNER_FLAGS, WIRE_DIR, WIRE_MOUNT, BackendUnavailable
from sandbox.backends.cgroups import tree_limit

log = logging.getLogger(__name__)

LABEL = "rft-sandbox.worker"
RUNNER_MOUNT = "/opt/rft-runner"
_CAPS = ["SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER", "CHOWN"]
_STREAM_LIMIT = 64 << 20
_FRAME = struct.Struct(">BxxxI")  # Docker's multiplexed stream: type, 3 pad bytes, length
_FALLBACK_BASELINE = 64 << 20  # an idle runner's memory, where the engine reports none


def _client() -> Any:
    import docker  # optional dependency: only this backend needs it

    return docker.from_env(timeout=60)


@dataclass
class DockerProcess:
    """One running container as a byte stream to its runner (stdout demultiplexed)."""

    container: Any
    raw: socket.socket
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    _pump: asyncio.Task[None] | None = None
    memory_limit: int = 0  # the container's memory limit now
    tmp_bytes: int = 0
    baseline: int | None = None  # what the idle container holds, measured before its first job
    follows_jobs: bool = True  # False once the engine refused an update: the limit stays

    async def prepare(self, memory_bytes: int) -> None:
        """Before a job: the container's memory limit for a job allowed `memory_bytes`; an
        engine call only when it differs from the last job's."""
        if not memory_bytes or not self.follows_jobs:
            return
        if self.baseline is None:
            self.baseline = await asyncio.to_thread(self._memory_in_use)
        limit = tree_limit(memory_bytes, self.baseline, self.tmp_bytes)
        if limit == self.memory_limit:
            return
        try:
            await asyncio.to_thread(self.container.update, mem_limit=limit, memswap_limit=limit)
        except Exception as exc:  # noqa: BLE001 - whatever the engine says, the job still runs
            self.follows_jobs = False
            log.warning(
                "container %s keeps its memory limit of %d bytes: the engine refused an update: %s",
                self.container.short_id,
                self.memory_limit,
                str(exc)[:300],
            )
            return
        self.memory_limit = limit

    def _memory_in_use(self) -> int:
        """The container's memory that reclaim cannot take back (file cache aside)."""
        try:
            stats = self.container.stats(stream=False, one_shot=True)["memory_stats"]
            detail = stats.get("stats", {})
            if "total_active_file" in detail:  # cgroup v1
                cache = detail["total_active_file"] + detail.get("total_inactive_file", 0)
            else:
                cache = detail.get("file", 0)
            return int(stats["usage"]) - int(cache)
        except Exception as exc:  # noqa: BLE001 - an engine without stats: assume a lean runner
            log.warning("no memory figures for container %s: %s", self.container.short_id, str(exc)[:300])
            return _FALLBACK_BASELINE

    async def kill(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.container.remove, force=True)


async def _demultiplex(source: asyncio.StreamReader, stdout: asyncio.StreamReader, name: str) -> None:
    """Split Docker's framed stream: stdout feeds the protocol reader, stderr goes to the log."""
    stderr_budget = 64 << 10
    try:
        while True:
            kind, size = _FRAME.unpack(await source.readexactly(_FRAME.size))
            payload = await source.readexactly(size)
            if kind == 1:
                stdout.feed_data(payload)
            elif stderr_budget > 0:
                stderr_budget -= len(payload)
                log.warning("runner[%s] stderr: %s", name, payload.decode("utf-8", "replace").rstrip()[:500])
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        stdout.feed_eof()


@dataclass
class DockerBackend:
    image: str = "rft-sandbox:latest"
    runtime: str | None = None
    instance: str = "default"  # label value: which service owns the containers
    memory_bytes: int = 2 << 30  # whole container until its first job (then it follows the jobs' limits)
    nano_cpus: int = 1_000_000_000  # one CPU per container
    pids_limit: int = 256
    tmp_bytes: int = 256 << 20
    first_job_uid: int = 61000
    mounts: list[tuple[str, str]] = field(default_factory=list)  # (host, container) read-only binds
    runner_args: tuple[str, ...] = ()  # extra runner options (e.g. --triton cuda)
    gpus: int = 0  # GPUs on this host: worker slot n gets GPU n % gpus alone (NVIDIA Container Toolkit)
    name: str = "docker"
    _docker: Any = field(default=None, repr=False)

    @property
    def docker(self) -> Any:
        if self._docker is None:
            self._docker = _client()
        return self._docker

    def check(self) -> None:
        try:
            self.docker.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means "no engine here"
            raise BackendUnavailable(
                f"no Docker Engine answers ({os.environ.get('DOCKER_HOST', 'default socket')}): {exc}"
            ) from None
        try:
            self.docker.images.get(self.image)
        except Exception as exc:  # noqa: BLE001
            raise BackendUnavailable(f"image {self.image} is missing (scripts/docker-up builds it): {exc}") from None

    def _labels(self) -> dict[str, str]:
        return {LABEL: self.instance}

    def remove_leftovers(self) -> int:
        """Remove this instance's containers (a crashed service's leftovers, or ours at shutdown)."""
        removed = 0
        for container in self.docker.containers.list(
            all=True,
            filters={"label": f"{LABEL}={self.instance}"},
            ignore_removed=True,  # one may go meanwhile
        ):
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed += 1
        return removed

    async def cleanup(self) -> None:
        removed = await asyncio.to_thread(self.remove_leftovers)
        if removed:
            log.info("removed %d leftover sandbox containers", removed)

    def device_requests(self, slot: int) -> list[Any] | None:
        """One GPU per worker: per-GPU warm workers, and jobs that cannot disturb each other."""
        if not self.gpus:
            return None
        from docker.types import DeviceRequest

        return [DeviceRequest(device_ids=[str(slot % self.gpus)], capabilities=[["gpu"]])]

    def _create(self, slot: int) -> tuple[Any, socket.socket]:
        container = self.docker.containers.create(
            self.image,
            entrypoint=["python3", *RUNNER_FLAGS, f"{RUNNER_MOUNT}/agent.py"],
            command=["--workdir", "/tmp", "--job-uid", str(self.first_job_uid + slot), *self.runner_args],
            stdin_open=True,
            tty=False,
            user="0:0",
            network_mode="none",
            ipc_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={self.tmp_bytes},mode=0755"},
            cap_drop=["ALL"],
            cap_add=_CAPS,
            security_opt=[f"seccomp={seccomp.docker_profile()}", "no-new-privileges"],
            mem_limit=self.memory_bytes,
            memswap_limit=self.memory_bytes,
            nano_cpus=self.nano_cpus,
            pids_limit=self.pids_limit,
            # a list, not a dict keyed by host path: one file may be mounted at two places
            volumes=[
                f"{RUNNER_DIR}:{RUNNER_MOUNT}:ro",
                f"{WIRE_DIR}:{WIRE_MOUNT}:ro",
                *(f"{host}:{inside}:ro" for host, inside in self.mounts),
            ],
            hostname="sandbox",
            environment={},
            labels=self._labels(),
            runtime=self.runtime,
            device_requests=self.device_requests(slot),
        )
        try:
            attached = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            raw = attached._sock  # the hijacked HTTP connection: a plain bidirectional socket
            container.start()
        except Exception:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            raise
        return container, raw

    async def start(self, slot: int) -> DockerProcess:
        container, raw = await asyncio.to_thread(self._create, slot)
        raw.setblocking(False)
        source, writer = await asyncio.open_connection(sock=raw, limit=_STREAM_LIMIT)
        stdout = asyncio.StreamReader(limit=_STREAM_LIMIT)
        pump = asyncio.get_running_loop().create_task(_demultiplex(source, stdout, container.short_id))
        return DockerProcess(container, raw, stdout, writer, pump, self.memory_bytes, self.tmp_bytes)
