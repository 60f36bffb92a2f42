"""Warm worker pool: a fair queue in front of N long-lived sandboxes.

One coroutine per slot owns one worker and takes jobs from a `FairQueue` (a line per
caller, served round-robin). A worker is replaced after `max_jobs` jobs, after any job
that left processes behind, and whenever it fails.

A failed worker never gives a job a second draw while the infrastructure is healthy,
and never turns what the job did into a SANDBOX_ERROR (which trainers drop):

* failed before the runner acknowledged the job: nothing of it ran, so it is sent to a
  fresh worker again (`retries` times), and only then answered with a sandbox failure;
* failed after: a control job (the runner's `ping`: a forked child, dropped to the job
  uid and rlimits, reports back) runs on a fresh worker. It passes: the sandbox works,
  so the failure was the job's, settled as a reply whose ending is `worker_lost` (the
  scorer's RUNTIME_ERROR or TIMEOUT, score 0). It fails: a second control on another
  fresh worker; failing too, the infrastructure is broken (sandbox failure); passing,
  the infrastructure was flaky and the job runs once more, once at most.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from sandbox.backends.base import Backend
from sandbox.backends.policy import JobRlimits, SandboxPolicy
from sandbox.fairqueue import FairQueue, Overloaded
from sandbox.wire import framing
from sandbox.wire.messages import Ending, Mode, PingJob, Tag
from sandbox.worker import RunnerReply, Worker, WorkerFailure, refusal

__all__ = ["WORKER_LOST", "Job", "Overloaded", "PoolStats", "SandboxFailure", "WorkerPool"]

log = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"  # a reply's ending: the job's worker failed and the control passed
_EMPTY_SECRET = framing.pack({})
_PONG = [{"t": Tag.PONG}, {"t": Tag.EXIT, "code": 0}]


def _control_job(rlimits: JobRlimits) -> bytes:
    """The control job: a ping, forked and dropped to the job uid under the jobs' rlimits."""
    return framing.pack(
        PingJob(mode=Mode.PING, limits={"task_ms": 5000, "memory_bytes": 64 << 20, **rlimits.job_limits()})
    )


def _lost_reply(failure: WorkerFailure, started: float) -> RunnerReply:
    """The job's own failure, for the scorer to judge (no records: nothing came back)."""
    elapsed_ms = (time.perf_counter() - started) * 1000
    return RunnerReply(
        {"ending": WORKER_LOST, "failure": failure.kind, "reason": str(failure), "elapsed_ms": elapsed_ms}, []
    )


class SandboxFailure(Exception):
    """A job could not be run: the infrastructure failed (not the job)."""


def _fail(job: Job, message: str) -> None:
    if not job.future.done():
        job.future.set_exception(SandboxFailure(message))


@dataclass
class Job:
    frames: bytes  # packed public job frame
    secret: bytes  # packed secret frame
    timeout: float  # seconds the runner may take
    caller: str = ""  # whose line of the fair queue it waits in
    memory_bytes: int = 0  # the job's memory limit, for its whole process tree (0: the sandbox's as it is)
    future: asyncio.Future[RunnerReply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class PoolStats:
    jobs_completed: int = 0  # jobs answered by the runner
    job_runs: int = 0  # jobs the runner acknowledged (started), reruns included
    jobs_lost: int = 0  # jobs whose worker failed while the control passed: the job's failure
    job_resends: int = 0  # jobs sent to a fresh worker again: their worker failed before they started
    job_reruns: int = 0  # jobs run again after the infrastructure was shown flaky
    control_jobs: int = 0
    control_failures: int = 0
    workers_recycled: int = 0
    worker_failures: int = 0
    busy: int = 0


class WorkerPool:
    """`size` workers of `backend`, each a sandbox as `policy` describes it."""

    def __init__(
        self,
        backend: Backend,
        policy: SandboxPolicy,
        size: int,
        *,
        max_jobs: int = 1000,
        queue_limit: int = 4096,
        caller_queue_limit: int | None = None,
        retries: int = 2,
        start_attempts: int = 3,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.size = size
        self.max_jobs = max_jobs
        self.retries = retries
        self.start_attempts = start_attempts
        self.stats = PoolStats()
        self._control_frame = _control_job(policy.rlimits)
        self._queue: FairQueue[Job] = FairQueue(queue_limit, caller_queue_limit)
        self._slots: list[asyncio.Task[None]] = []
        self._closing = False
        self._workers: dict[int, Worker] = {}
        self._waiting: set[asyncio.Future[RunnerReply]] = set()  # jobs queued or running: their callers wait
        self._abandoned: str | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def queued_by_caller(self) -> dict[str, int]:
        return self._queue.depths()

    @property
    def live_workers(self) -> int:
        return sum(worker.alive for worker in self._workers.values())

    async def start(self) -> None:
        workers = [Worker(self.backend, slot, self.policy) for slot in range(self.size)]
        await asyncio.gather(*(w.start() for w in workers))
        for worker in workers:
            self._workers[worker.slot] = worker
            self._slots.append(asyncio.create_task(self._serve(worker.slot)))

    async def close(self) -> None:
        """Stop every slot, then every worker. A slot is cancelled until it has ended: in
        Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives just as what it
        awaits finishes (gh-86296), and a slot replacing its worker then went back to wait
        for the next job, so a single cancel could leave the close waiting forever."""
        self._closing = True
        pending = set(self._slots)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=1.0)
        await asyncio.gather(*(w.stop() for w in self._workers.values()), return_exceptions=True)
        self._workers.clear()

    def admit(self, caller: str, count: int) -> None:
        """Refuse a whole request up front rather than half of it later (raises Overloaded)."""
        self._queue.admit(caller, count)

    async def run(self, job: Job) -> RunnerReply:
        if self._abandoned is not None:
            raise SandboxFailure(self._abandoned)
        self._queue.put(job.caller, job, job.future)
        self._waiting.add(job.future)
        try:
            return await job.future
        finally:
            self._waiting.discard(job.future)

    def abandon(self, reason: str) -> None:
        """The service is stopping: every job queued or running is answered with a sandbox
        failure saying `reason` (its task a SANDBOX_ERROR, not a silence), and so is any job
        sent later. A running job's worker finishes it unheard; `close` stops the workers."""
        self._abandoned = reason
        for future in list(self._waiting):
            if not future.done():
                future.set_exception(SandboxFailure(reason))

    async def _fresh_worker(self, slot: int) -> Worker | None:
        """Replace the slot's worker; None if the backend cannot start one right now."""
        old = self._workers.pop(slot, None)
        if old is not None:
            await old.stop()
        for attempt in range(self.start_attempts):
            worker = Worker(self.backend, slot, self.policy)
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

    def _lost(self, slot: int, failure: WorkerFailure) -> None:
        self.stats.worker_failures += 1
        self._workers.pop(slot, None)  # Worker.run stopped it
        started = "started" if failure.delivered else "not started"
        log.warning("worker %d failed (%s, job %s): %s", slot, failure.kind, started, failure)

    async def _control(self, slot: int) -> Worker | None:
        """A fresh worker that ran the control job right, or None."""
        self.stats.control_jobs += 1
        worker = await self._fresh_worker(slot)
        if worker is not None:
            try:
                reply = await worker.run(self._control_frame, _EMPTY_SECRET, 5.0)
            except WorkerFailure as failure:
                self._lost(slot, failure)
                worker = None
            else:
                if reply.meta.get("ending") == Ending.CLOSED and reply.records == _PONG:
                    return worker
                log.error("worker %d failed the control job: %r %r", slot, reply.meta, reply.records[:4])
                await worker.stop()
                self._workers.pop(slot, None)
                worker = None
        self.stats.control_failures += 1
        return None

    async def _serve(self, slot: int) -> None:
        worker: Worker | None = self._workers[slot]
        while not self._closing:
            job = await self._queue.get()  # never one whose caller gave up
            self.stats.busy += 1
            try:
                worker = await _Settlement(self, slot, job).run(worker)
            finally:
                self.stats.busy -= 1


class _Settlement:
    """One job's way through worker failures to a settled future, by the module's rules:
    a resend while nothing of it ran, a control once it did, one rerun at most once two
    controls showed the infrastructure flaky. Each step returns whether to run it again;
    `worker` is the slot's worker throughout, handed back at the end."""

    def __init__(self, pool: WorkerPool, slot: int, job: Job) -> None:
        self.pool = pool
        self.slot = slot
        self.job = job
        self.worker: Worker | None = None
        self.resends = pool.retries
        self.reruns = 1

    async def run(self, worker: Worker | None) -> Worker | None:
        """Run the job and settle its future either way; returns the slot's worker."""
        self.worker = worker
        while await self._attempt():
            pass
        return self.worker

    async def _attempt(self) -> bool:
        if self.worker is None or not self.worker.alive:
            self.worker = await self.pool._fresh_worker(self.slot)
            if self.worker is None:
                _fail(self.job, "could not start a sandbox (infrastructure error)")
                return False
        job, started = self.job, time.perf_counter()
        try:
            reply = await self.worker.run(job.frames, job.secret, job.timeout, job.memory_bytes)
        except WorkerFailure as failure:
            self.pool._lost(self.slot, failure)
            self.worker = None
            if not failure.delivered:
                return self._resend_before_delivery(failure)
            self.pool.stats.job_runs += 1
            return await self._control_after_delivery(failure, started)
        await self._answered(reply)
        return False

    def _resend_before_delivery(self, failure: WorkerFailure) -> bool:
        """Nothing of the job ran: it goes to a fresh worker again, `retries` times."""
        if self.resends and not self.job.future.done():
            self.resends -= 1
            self.pool.stats.job_resends += 1
            return True
        _fail(self.job, f"the sandbox failed before the job started (infrastructure): {failure}")
        return False

    async def _control_after_delivery(self, failure: WorkerFailure, started: float) -> bool:
        """The job ran: a control that passes says the failure was the job's own."""
        self.worker = await self.pool._control(self.slot)
        if self.worker is None:
            return await self._rerun_after_flaky_control()
        self.pool.stats.jobs_lost += 1
        if not self.job.future.done():
            self.job.future.set_result(_lost_reply(failure, started))
        return False

    async def _rerun_after_flaky_control(self) -> bool:
        """The control failed: a second one failing too is the infrastructure's failure;
        passing, the infrastructure was flaky, and the job runs once more, once at most."""
        self.worker = await self.pool._control(self.slot)
        if self.worker is None:
            _fail(self.job, "the sandbox failed, and so did two control jobs (infrastructure error)")
            return False
        if self.reruns and not self.job.future.done():
            self.reruns -= 1
            self.pool.stats.job_reruns += 1
            return True
        _fail(self.job, "the sandbox failed twice on this job, and each time so did a control job")
        return False

    async def _answered(self, reply: RunnerReply) -> None:
        """The runner answered: the reply settles the job, unless it is a refusal."""
        assert self.worker is not None
        pool = self.pool
        pool.stats.job_runs += 1
        pool.stats.jobs_completed += 1
        refused = refusal(reply)
        if refused is not None:
            log.error("worker %d: %s", self.slot, refused)
            _fail(self.job, refused)
        elif not self.job.future.done():
            self.job.future.set_result(reply)
        # "recycle": the runner answered but cannot take another job (an SQL engine stalled)
        meta = reply.meta
        if self.worker.jobs_done >= pool.max_jobs or meta.get("leftover_processes") or meta.get("recycle"):
            pool.stats.workers_recycled += 1
            self.worker = await pool._fresh_worker(self.slot)
