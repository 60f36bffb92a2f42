"""The Triton lane: its own warm pool, started on first use, and the reference cache.

Triton runners import torch and triton once (about a second and 300 MiB each), so they
are a separate pool from the lean Python/SQL workers, started only when the first
Triton task arrives: a service that never sees one never pays for them. Each runner
gets the service's torch/triton mounted read-only and serves jobs on one device (the
CPU interpreter, or a GPU: `--triton-device cuda`).

Reference results are cached by a hash of everything they depend on (source, seeds,
shapes, device) within a byte budget, and concurrent tasks of the same problem share
one reference run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import OrderedDict
from typing import Any

from sandbox.backends.base import Backend
from sandbox.pool import Job, SandboxFailure, WorkerPool
from sandbox.runner import framing
from sandbox.triton.packages import PackagesMissing, package_mounts
from sandbox.triton.plan import Reference, ReferenceRequest, TritonDevice, TritonPlan, read_reference
from sandbox.worker import RunnerReply

log = logging.getLogger(__name__)
_RUNNER_SLACK_SECONDS = 2.0
_EMPTY_SECRET = framing.pack({})


class TritonUnavailable(Exception):
    """This service cannot run Triton tasks (torch or triton is not installed)."""


class TritonLane:
    def __init__(self, backend: Backend, device: TritonDevice, workers: int, *, cache_bytes: int = 512 << 20) -> None:
        self.base_backend = backend
        self.device = device
        self.workers = workers
        self.cache_bytes = cache_bytes
        self.pool: WorkerPool | None = None  # runs references and candidates
        self.compiler: WorkerPool | None = None  # CPU only: compiles what the interpreter ran
        self._starting = asyncio.Lock()
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

    async def _start(self) -> None:
        async with self._starting:
            if self.pool is not None:
                return
            modes = [self.device.kind] + ([] if self.device.gpu else ["compile"])
            try:
                pools = [WorkerPool(self._backend(mode), self.workers, retries=1) for mode in modes]
            except PackagesMissing as exc:
                raise TritonUnavailable(f"this server cannot run Triton tasks: {exc}") from None
            try:
                await asyncio.gather(*(pool.start() for pool in pools))
            except Exception as exc:  # noqa: BLE001 - whatever stopped it, Triton is unavailable for now
                await asyncio.gather(*(pool.close() for pool in pools), return_exceptions=True)
                raise SandboxFailure(f"could not start Triton sandboxes: {exc}") from None
            self.pool = pools[0]
            self.compiler = pools[1] if len(pools) > 1 else None
            log.info("triton lane started", extra={"fields": {"workers": self.workers, "modes": modes}})

    async def close(self) -> None:
        for pool in (self.pool, self.compiler):
            if pool is not None:
                await pool.close()
        self.pool = self.compiler = None

    async def run(self, job: dict[str, Any], task_ms: int, *, compile: bool = False, caller: str = "") -> RunnerReply:
        await self._start()
        pool = self.compiler if compile else self.pool
        assert pool is not None
        timeout = task_ms / 1000 + _RUNNER_SLACK_SECONDS
        memory = job.get("limits", {}).get("memory_bytes", 0)
        return await pool.run(Job(framing.pack(job), _EMPTY_SECRET, timeout, caller, memory))

    async def run_candidate(self, plan: TritonPlan, reference: Reference, caller: str = "") -> RunnerReply:
        """The candidate's run; on the CPU, then the ahead-of-time compile of the kernels it
        launched, whose records are added to the report (the compile's ending wins if it
        did not close cleanly)."""
        task_ms = plan.limits["task_ms"]
        reply = await self.run(plan.candidate_job(reference), task_ms, caller=caller)
        job = plan.compile_job(reply.records)
        if job is None:
            return reply
        compiled = await self.run(job, task_ms, compile=True, caller=caller)
        meta = dict(reply.meta)
        if compiled.meta.get("ending") != "closed":
            meta["ending"] = compiled.meta.get("ending")
        elapsed = [m.get("elapsed_ms") for m in (reply.meta, compiled.meta)]
        meta["elapsed_ms"] = sum(e for e in elapsed if isinstance(e, (int, float)))
        return RunnerReply(meta, [*reply.records, *compiled.records])

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
            reply = await self.run(request.job, request.task_ms, caller=caller)
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
