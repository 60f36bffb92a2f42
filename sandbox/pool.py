"""Warm worker pool: a bounded queue in front of N long-lived sandboxes.

One coroutine per slot owns one worker and takes jobs from a shared FIFO. A worker is
replaced after `max_jobs` jobs, after any job that left processes behind, and whenever
it fails; the job it was running is retried on the fresh worker (`retries` times), and
only then answered with a sandbox failure, never dropped or turned into a verdict.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sandbox.backends.base import Backend
from sandbox.worker import RunnerReply, Worker, WorkerFailure

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The queue is full: the caller should back off (RESOURCE_EXHAUSTED)."""


class SandboxFailure(Exception):
    """A job could not be run even after retries on fresh workers."""


@dataclass
class Job:
    frames: bytes  # packed public job frame
    secret: bytes  # packed secret frame
    timeout: float  # seconds the runner may take
    memory_bytes: int = 0  # the job's memory limit, for its whole process tree (0: the sandbox's as it is)
    future: asyncio.Future[RunnerReply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class PoolStats:
    jobs_completed: int = 0
    workers_recycled: int = 0
    worker_failures: int = 0
    busy: int = 0


class WorkerPool:
    def __init__(
        self,
        backend: Backend,
        size: int,
        *,
        max_jobs: int = 1000,
        queue_limit: int = 4096,
        retries: int = 2,
        start_attempts: int = 3,
    ) -> None:
        self.backend = backend
        self.size = size
        self.max_jobs = max_jobs
        self.queue_limit = queue_limit
        self.retries = retries
        self.start_attempts = start_attempts
        self.stats = PoolStats()
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._slots: list[asyncio.Task[None]] = []
        self._workers: dict[int, Worker] = {}

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def live_workers(self) -> int:
        return sum(worker.alive for worker in self._workers.values())

    async def start(self) -> None:
        workers = [Worker(self.backend, slot) for slot in range(self.size)]
        await asyncio.gather(*(w.start() for w in workers))
        for worker in workers:
            self._workers[worker.slot] = worker
            self._slots.append(asyncio.create_task(self._serve(worker.slot)))

    async def close(self) -> None:
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self._workers.values()), return_exceptions=True)
        self._workers.clear()

    def admit(self, count: int) -> None:
        """Refuse a whole request up front rather than half of it later."""
        if self._queue.qsize() + count > self.queue_limit:
            raise Overloaded(f"{self._queue.qsize()} jobs queued; {count} more would exceed {self.queue_limit}")

    async def run(self, job: Job) -> RunnerReply:
        self._queue.put_nowait(job)
        return await job.future

    async def _fresh_worker(self, slot: int) -> Worker | None:
        """Replace the slot's worker; None if the backend cannot start one right now."""
        old = self._workers.pop(slot, None)
        if old is not None:
            await old.stop()
        for attempt in range(self.start_attempts):
            worker = Worker(self.backend, slot)
            try:
                await worker.start()
            except (WorkerFailure, OSError) as exc:
                self.stats.worker_failures += 1
                log.error("could not start sandbox worker %d (attempt %d): %s", slot, attempt + 1, exc)
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            self._workers[slot] = worker
            return worker
        return None

    async def _run_with_retries(self, slot: int, worker: Worker | None, job: Job) -> Worker | None:
        """Run one job, replacing failed workers; settles the job's future either way."""
        for attempt in range(self.retries + 1):
            if worker is None:
                worker = await self._fresh_worker(slot)
                if worker is None:
                    break
            try:
                reply = await worker.run(job.frames, job.secret, job.timeout, job.memory_bytes)
            except WorkerFailure as exc:
                self.stats.worker_failures += 1
                log.warning("worker %d failed (attempt %d): %s", slot, attempt + 1, exc)
                await worker.stop()
                self._workers.pop(slot, None)
                worker = None
                continue
            if not job.future.done():
                job.future.set_result(reply)
            self.stats.jobs_completed += 1
            if worker.jobs_done >= self.max_jobs or reply.meta.get("leftover_processes"):
                self.stats.workers_recycled += 1
                worker = await self._fresh_worker(slot)
            return worker
        if not job.future.done():
            job.future.set_exception(SandboxFailure("the sandbox failed on every attempt (infrastructure error)"))
        return worker

    async def _serve(self, slot: int) -> None:
        worker: Worker | None = self._workers[slot]
        while True:
            job = await self._queue.get()
            if job.future.done():  # the caller gave up (deadline, cancellation)
                continue
            self.stats.busy += 1
            try:
                worker = await self._run_with_retries(slot, worker, job)
            finally:
                self.stats.busy -= 1
