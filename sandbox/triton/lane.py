"""The Triton lane: its own warm pool, started on first use, and the reference cache.

Triton runners import torch and triton once (about a second and 300 MiB each), so they
are a separate pool from the lean Python/SQL workers, started only when the first
Triton task arrives: a service that never sees one never pays for them. Each runner
gets the service's torch/triton mounted read-only and serves jobs on one device (the
CPU interpreter, or a GPU: `--triton-device cuda`).

References run on sandboxes of their own (one worker, started on first use), never on
a runner that later forks a candidate or compile job: a runner reads the report of every
job it runs, and each job's process is a fork of it, so a candidate forked from the runner
that had read the reference's outputs could find them in the heap it inherited. Reference
results are cached by a hash of everything they depend on (source, seeds, shapes, device)
within a byte budget, and concurrent tasks of the same problem share one reference run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from typing import Any

from rewards.triton import CompileRun
from sandbox.backends.base import Backend
from sandbox.pool import WORKER_LOST, Job, SandboxFailure, WorkerPool
from sandbox.triton.packages import PackagesMissing, package_mounts
from sandbox.triton.plan import Reference, ReferenceRequest, TritonDevice, TritonPlan, read_reference
from sandbox.wire import framing
from sandbox.worker import RunnerReply

log = logging.getLogger(__name__)
_RUNNER_SLACK_SECONDS = 2.0
_EMPTY_SECRET = framing.pack({})


class TritonUnavailable(Exception):
    """This service cannot run Triton tasks (torch or triton is not installed)."""


@dataclasses.dataclass
class CandidateReply(RunnerReply):
    """The candidate job's reply (its records and its runner's meta) and, on the CPU, the
    ahead-of-time compile job's, kept apart: each report is checked against its own job."""

    compiled: CompileRun | None = None


class TritonLane:
    def __init__(self, backend: Backend, device: TritonDevice, workers: int, *, cache_bytes: int = 512 << 20) -> None:
        self.base_backend = backend
        self.device = device
        self.workers = workers
        self.cache_bytes = cache_bytes
        self.pool: WorkerPool | None = None  # runs candidates
        self.compiler: WorkerPool | None = None  # CPU only: compiles what the interpreter ran
        self.references: WorkerPool | None = None  # runs references, and nothing else
        self._starting = asyncio.Lock()
        self._starting_references = asyncio.Lock()
        self._cache: OrderedDict[str, Reference] = OrderedDict()
        self._cached_bytes = 0
        self._running: dict[str, asyncio.Future[Reference]] = {}

    def _backend(self, mode: str) -> Backend:
        """The service's backend, plus torch/triton mounts and the runner's Triton mode; on a
        GPU, one GPU per worker (only these sandboxes see any)."""
        extra: dict[str, Any] = {}
        if mode == "cuda":
            if self.base_backend.name != "docker":
                raise TritonUnavailable("Triton on a GPU needs the docker backend (it passes the GPUs through)")
            extra["gpus"] = self.workers
        return dataclasses.replace(  # type: ignore[type-var]
            self.base_backend,
            mounts=[*self.base_backend.mounts, *package_mounts()],
            runner_args=("--triton", mode),
            **extra,
        )

    async def _pools(self, kinds: list[tuple[str, int]]) -> list[WorkerPool]:
        """Started pools of (runner mode, workers)."""
        try:
            pools = [WorkerPool(self._backend(mode), workers, retries=1) for mode, workers in kinds]
        except PackagesMissing as exc:
            raise TritonUnavailable(f"this server cannot run Triton tasks: {exc}") from None
        try:
            await asyncio.gather(*(pool.start() for pool in pools))
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, Triton is unavailable for now
            await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)
            raise SandboxFailure(f"could not start Triton sandboxes: {exc}") from None
        log.info("triton sandboxes started", extra={"fields": {"pools": kinds}})
        return pools

    async def _start(self) -> None:
        """The candidates' pool (and on the CPU the compiler), with the first candidate."""
        async with self._starting:
            if self.pool is None:
                kinds = [(self.device.kind, self.workers)] + ([] if self.device.gpu else [("compile", self.workers)])
                pools = await self._pools(kinds)
                self.pool, self.compiler = pools[0], (pools[1] if len(pools) > 1 else None)

    async def _start_references(self) -> WorkerPool:
        """The references' pool, one worker, with the first reference that is not cached
        (before the candidates' pools: fewer runners importing torch at once)."""
        async with self._starting_references:
            if self.references is None:
                (self.references,) = await self._pools([(self.device.kind, 1)])
            return self.references

    async def close(self) -> None:
        for pool in (self.pool, self.compiler, self.references):
            if pool is not None:
                await pool.close()
        self.pool = self.compiler = self.references = None

    @staticmethod
    async def _run(pool: WorkerPool, job: dict[str, Any], task_ms: int, caller: str) -> RunnerReply:
        timeout = task_ms / 1000 + _RUNNER_SLACK_SECONDS
        memory = job.get("limits", {}).get("memory_bytes", 0)
        return await pool.run(Job(framing.pack(job), _EMPTY_SECRET, timeout, caller, memory))

    async def run_candidate(self, plan: TritonPlan, reference: Reference, caller: str = "") -> CandidateReply:
        """The candidate's run; on the CPU, then the ahead-of-time compile of the kernels it
        launched. The reply's meta is the candidate job's, with both jobs' elapsed time, or
        the compile job's when its worker was lost (the candidate's failure, `sandbox.pool`)."""
        await self._start()
        assert self.pool is not None
        task_ms = plan.limits["task_ms"]
        reply = await self._run(self.pool, plan.candidate_job(reference), task_ms, caller)
        job = plan.compile_job(reply.records)
        if job is None or reply.meta.get("ending") == WORKER_LOST:
            return CandidateReply(reply.meta, reply.records)
        assert self.compiler is not None
        compiled = await self._run(self.compiler, job, task_ms, caller)
        kernels = tuple(str(launch["kernel"]) for launch in job["launches"])
        meta = compiled.meta if compiled.meta.get("ending") == WORKER_LOST else dict(reply.meta)
        elapsed = [m.get("elapsed_ms") for m in (reply.meta, compiled.meta)]
        meta["elapsed_ms"] = sum(e for e in elapsed if isinstance(e, (int, float)))
        return CandidateReply(meta, reply.records, CompileRun(kernels, compiled.records, compiled.meta))

    def cached(self, key: str) -> Reference | None:
        reference = self._cache.get(key)
        if reference is not None:
            self._cache.move_to_end(key)
        return reference

    async def reference(self, request: ReferenceRequest, caller: str = "") -> Reference:
        """The reference's results: cached, or computed once however many tasks ask at a time
        (in the line of the first caller who asked). Raises ReferenceFailed when the task's
        reference does not run."""
        cached = self.cached(request.key)
        if cached is not None:
            return cached
        running = self._running.get(request.key)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[Reference] = asyncio.get_running_loop().create_future()
        self._running[request.key] = future
        try:
            pool = await self._start_references()
            reply = await self._run(pool, request.job, request.task_ms, caller)
            reference = read_reference(reply.records, request, str(reply.meta.get("ending")))
            self._store(request.key, reference)
            future.set_result(reference)
            return reference
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it; nobody else must log it
            raise
        finally:
            del self._running[request.key]

    def _store(self, key: str, reference: Reference) -> None:
        if reference.size > self.cache_bytes:
            return
        self._cache[key] = reference
        self._cached_bytes += reference.size
        while self._cached_bytes > self.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.size
