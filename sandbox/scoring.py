"""Score prepared tasks: run them on the pool, judge the observations, audit findings.

This is the seam between transport (the gRPC server, the CLI's embedded mode) and
execution; it speaks the v1 messages on its outside and plain data inside.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from rewards.model import Status, Verdict
from rewards.triton import score_triton
from sandbox.api import pb
from sandbox.audit import AuditLog
from sandbox.pool import Job, SandboxFailure, WorkerPool
from sandbox.python.plan import InvalidTask
from sandbox.runner import framing
from sandbox.sql.plan import GoldKey, GoldRequest, SqlContext, executions
from sandbox.sql.postgres import PostgresExecutor
from sandbox.tasks import PreparedTask
from sandbox.triton.lane import TritonLane
from sandbox.triton.plan import ReferenceFailed
from sandbox.worker import RunnerReply

log = logging.getLogger(__name__)
_RUNNER_SLACK_SECONDS = 2.0


class ScoringService:
    def __init__(self, pool: WorkerPool, audit: AuditLog, backend_name: str, triton: TritonLane) -> None:
        self.postgres = PostgresExecutor()
        self.triton = triton
        self.pool = pool
        self.audit = audit
        self.backend_name = backend_name

    async def score(self, task: PreparedTask) -> pb.Result:
        arrived = time.perf_counter()
        run_ms = queue_ms = 0.0
        try:
            if task.early is not None:
                verdict = task.early
            else:
                verdict, queue_ms, run_ms = await self._run(task, arrived)
        except SandboxFailure as exc:
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=str(exc))
        except Exception as exc:
            log.exception("scoring task %s failed", task.id)
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=f"internal error: {type(exc).__name__}")
        self.audit.record(task, verdict)
        total_ms = (time.perf_counter() - arrived) * 1000
        return _to_proto(task.id, verdict, self.backend_name, queue_ms, run_ms, total_ms)

    async def run_job(self, job: dict[str, Any], secret: dict[str, Any], task_ms: int) -> RunnerReply:
        """One job: the runner's meta and the records it returned (untrusted).

        PostgreSQL queries run on their server (its permission system is the wall), not in
        a sandbox process; their records have the same shape.
        """
        if job.get("engine") == "postgres":
            started = time.perf_counter()
            records = await self.postgres.run(job)
            if any(r.get("kind") == "db_error" for r in records):
                raise SandboxFailure("the PostgreSQL server failed (not the candidate)")
            return RunnerReply({"ending": "closed", "elapsed_ms": (time.perf_counter() - started) * 1000}, records)
        frames = Job(
            framing.pack(job),
            framing.pack(secret),
            timeout=task_ms / 1000 + _RUNNER_SLACK_SECONDS,
            memory_bytes=job.get("limits", {}).get("memory_bytes", 0),
        )
        return await self.pool.run(frames)

    async def _run(self, task: PreparedTask, arrived: float) -> tuple[Verdict, float, float]:
        if task.triton is not None:
            try:
                reference = await self.triton.reference(task.triton.reference)
            except ReferenceFailed as exc:  # validated before; failing now is not the candidate's fault
                raise SandboxFailure(str(exc)) from None
            reply = await self.triton.run_candidate(task.triton, reference)
            verdict = score_triton(reference.run, reply.records, reply.meta, task.triton.findings, task.triton.rules)
        else:
            reply = await self.run_job(task.job, task.secret, task.limits["task_ms"])
            verdict = task.judge(reply.records, reply.meta)
        runner_ms = reply.meta.get("elapsed_ms")
        run_ms = float(runner_ms) if isinstance(runner_ms, (int, float)) else 0.0
        queue_ms = max((time.perf_counter() - arrived) * 1000 - run_ms, 0.0)
        return verdict, queue_ms, run_ms


def _to_proto(
    task_id: str, verdict: Verdict, backend: str, queue_ms: float, run_ms: float, total_ms: float
) -> pb.Result:
    return pb.Result(
        id=task_id,
        status=int(verdict.status),
        score=verdict.score,
        tests=[
            pb.TestOutcome(
                index=t.index,
                passed=t.passed,
                status=int(t.status),
                name=t.name,
                message=t.message,
                duration_ms=t.duration_ms,
            )
            for t in verdict.tests
        ],
        components=verdict.components,
        findings=[
            pb.Finding(code=f.code, severity=int(f.severity), message=f.message, evidence=f.evidence)
            for f in verdict.findings
        ],
        timings=pb.Timings(queue_ms=queue_ms, run_ms=run_ms, total_ms=total_ms),
        message=verdict.message,
        stdout_excerpt=verdict.stdout,
        stderr_excerpt=verdict.stderr,
        backend=backend,
    )


async def ensure_gold(scoring: ScoringService, tasks: list[PreparedTask], context: SqlContext) -> None:
    """Compute the reference results the tasks need and do not have yet, concurrently.

    A gold query that does not run cleanly on every file of its database makes its task
    invalid (`InvalidTask` naming `tasks[i].sql.gold_sql`), before any candidate runs.
    """
    pending: dict[GoldKey, tuple[int, GoldRequest]] = {}
    for index, task in enumerate(tasks):
        for request in task.gold:
            if request.key not in context.gold and request.key not in pending:
                pending[request.key] = (index, request)

    async def compute(index: int, request: GoldRequest) -> None:
        reply = await scoring.run_job(request.job, {}, request.task_ms)
        files = len(request.job.get("databases") or request.job["schemas"])
        observed = executions(reply.records, files)
        if observed is None:
            raise SandboxFailure("the sandbox did not report the reference query on every database file")
        for number, execution in enumerate(observed):
            if execution.result is None or execution.result.truncated:
                why = execution.error or ("result too large" if execution.result else execution.kind)
                raise InvalidTask(
                    f"tasks[{index}].sql.gold_sql",
                    f"the gold query fails on database {request.key.database!r} "
                    f"(file #{number}): {execution.kind}: {why}",
                )
        context.gold[request.key] = [e.result for e in observed if e.result is not None]

    await asyncio.gather(*(compute(i, r) for i, r in pending.values()))


async def ensure_references(scoring: ScoringService, tasks: list[PreparedTask]) -> None:
    """Run the Triton references the tasks need (cached ones cost nothing), concurrently.

    A reference that does not run makes its task invalid (`InvalidTask` naming
    `tasks[i].triton.reference`), before any candidate runs.
    """
    pending = {}
    for index, task in enumerate(tasks):
        if task.triton is not None and task.early is None and task.triton.reference.key not in pending:
            pending[task.triton.reference.key] = (index, task.triton.reference)

    async def compute(index: int, request: Any) -> None:
        try:
            await scoring.triton.reference(request)
        except ReferenceFailed as exc:
            raise InvalidTask(f"tasks[{index}].triton.reference", str(exc)) from None

    await asyncio.gather(*(compute(i, r) for i, r in pending.values()))
