"""Score prepared tasks: run them on the pool, judge the observations, audit findings.

This is the seam between transport (the gRPC server, the CLI's embedded mode) and
execution; it speaks the v1 messages on its outside and plain data inside.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from rewards.model import Finding, NeedsJudge, Severity, Status, Verdict
from rewards.sql import ResultSet
from rewards.triton import score_triton
from sandbox.api import pb
from sandbox.audit import AuditLog
from sandbox.pool import WORKER_LOST, Job, SandboxFailure, WorkerPool
from sandbox.python.plan import InvalidTask
from sandbox.sql.plan import GoldKey, GoldRequest, SqlContext, executions
from sandbox.sql.postgres import PostgresExecutor
from sandbox.tasks import PreparedTask
from sandbox.triton.lane import TritonLane
from sandbox.triton.plan import ReferenceFailed
from sandbox.wire import framing
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

    async def score(self, task: PreparedTask, caller: str = "") -> pb.Result:
        """`caller` names the line of the pool's fair queue the task's jobs wait in."""
        arrived = time.perf_counter()
        run_ms = queue_ms = 0.0
        try:
            if task.early is not None:
                verdict = task.early
            else:
                verdict, queue_ms, run_ms = await self._run(task, arrived, caller)
        except SandboxFailure as exc:
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=str(exc))
        except Exception as exc:
            log.exception("scoring task %s failed", task.id)
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=f"internal error: {type(exc).__name__}")
        self.audit.record(task, verdict)
        total_ms = (time.perf_counter() - arrived) * 1000
        return _to_proto(task.id, verdict, self.backend_name, queue_ms, run_ms, total_ms)

    async def run_job(self, job: dict[str, Any], secret: dict[str, Any], task_ms: int, caller: str = "") -> RunnerReply:
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
        timeout = task_ms / 1000 + _RUNNER_SLACK_SECONDS
        memory = job.get("limits", {}).get("memory_bytes", 0)  # for the job's whole process tree
        return await self.pool.run(Job(framing.pack(job), framing.pack(secret), timeout, caller, memory))

    async def _run(self, task: PreparedTask, arrived: float, caller: str) -> tuple[Verdict, float, float]:
        if task.triton is not None:
            try:
                reference = await self.triton.reference(task.triton.reference, caller)
            except ReferenceFailed as exc:  # validated before; failing now is not the candidate's fault
                raise SandboxFailure(str(exc)) from None
            reply = await self.triton.run_candidate(task.triton, reference, caller)
            plan = task.triton
            verdict = _judged(
                reply,
                lambda records, meta: score_triton(
                    reference.run, records, meta, plan.findings, plan.rules, reply.compiled
                ),
            )
        else:
            reply = await self.run_job(task.job, task.secret, task.limits["task_ms"], caller)
            try:
                verdict = _judged(reply, task.judge)
            except NeedsJudge:  # values that are not data: the same tests, whole, in the judge
                assert task.fallback is not None, "only tasks with a fallback defer"
                job, secret, judge = task.fallback
                reply = await self.run_job(job, secret, task.limits["task_ms"], caller)
                verdict = _judged(reply, judge)
        runner_ms = reply.meta.get("elapsed_ms")
        run_ms = float(runner_ms) if isinstance(runner_ms, (int, float)) else 0.0
        queue_ms = max((time.perf_counter() - arrived) * 1000 - run_ms, 0.0)
        return verdict, queue_ms, run_ms


def _judged(reply: RunnerReply, judge: Any) -> Verdict:
    """The trusted verdict on a job's records, or the candidate's failure for a lost worker."""
    if reply.meta.get("ending") == WORKER_LOST:
        return worker_lost_verdict(reply.meta)
    return judge(reply.records, reply.meta)


def worker_lost_verdict(meta: dict[str, Any]) -> Verdict:
    """The job's worker failed while the sandbox was shown healthy (`sandbox.pool`): what the
    candidate did cost it its worker, so it is the candidate's failure, score 0."""
    reason = str(meta.get("reason", ""))[:500]
    if meta.get("failure") == "hung":
        status, code, what = Status.TIMEOUT, "sandbox_worker_hung", "the sandbox stopped answering during the job"
    else:
        status, code, what = Status.RUNTIME_ERROR, "sandbox_worker_crashed", "the sandbox failed during the job"
    finding = Finding(code, Severity.WARNING, f"{what}; a control job on a fresh sandbox passed", reason)
    return Verdict(status, 0.0, findings=[finding], message=f"{what} (a control job passed): {reason}")


def _text(value: str) -> str:
    """Text for a proto string field, which must be UTF-8: a lone surrogate from inside the
    sandbox (a valid JSON escape) would fail the whole RPC, so it becomes '?'."""
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


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
                name=_text(t.name),
                message=_text(t.message),
                duration_ms=t.duration_ms,
            )
            for t in verdict.tests
        ],
        components=verdict.components,
        findings=[
            pb.Finding(code=f.code, severity=int(f.severity), message=_text(f.message), evidence=_text(f.evidence))
            for f in verdict.findings
        ],
        timings=pb.Timings(queue_ms=queue_ms, run_ms=run_ms, total_ms=total_ms),
        message=_text(verdict.message),
        stdout_excerpt=_text(verdict.stdout),
        stderr_excerpt=_text(verdict.stderr),
        backend=backend,
    )


async def ensure_gold(
    scoring: ScoringService, tasks: list[PreparedTask], context: SqlContext, caller: str = ""
) -> None:
    """Compute the reference results the tasks need and do not have yet, concurrently.

    A gold query that does not run cleanly on every file of its database makes its task
    invalid (`InvalidTask` naming `tasks[i].sql.gold_sql`), before any candidate runs;
    on an automatic variant (past `request.required`) it only leaves that variant unused.
    Then each request's `settle` picks the task's databases from the results.
    """
    pending: dict[GoldKey, tuple[int, GoldRequest]] = {}
    for index, task in enumerate(tasks):
        for request in task.gold:
            done = context.sort_keys if request.optional else context.gold
            if request.key not in done and request.key not in pending:
                pending[request.key] = (index, request)

    async def compute(index: int, request: GoldRequest) -> None:
        if request.optional:
            await _compute_sort_keys(scoring, request, context, caller)
            return
        reply = await scoring.run_job(request.job, {}, request.task_ms, caller)
        if reply.meta.get("ending") == WORKER_LOST:
            raise InvalidTask(
                f"tasks[{index}].sql.gold_sql",
                f"the gold query made the sandbox fail on {request.key.database!r}: {reply.meta.get('reason')}",
            )
        files = len(request.job.get("databases") or request.job["schemas"])
        observed = executions(reply.records, files)
        if observed is None:
            raise SandboxFailure("the sandbox did not report the reference query on every database file")
        results: list[ResultSet | None] = []
        for number, execution in enumerate(observed):
            if execution.result is None or execution.result.truncated:
                if request.required and number >= request.required:
                    results.append(None)
                    continue
                why = execution.error or ("result too large" if execution.result else execution.kind)
                raise InvalidTask(
                    f"tasks[{index}].sql.gold_sql",
                    f"the gold query fails on database {request.key.database!r} "
                    f"(file #{number}): {execution.kind}: {why}",
                )
            results.append(execution.result)
        context.gold[request.key] = results

    await asyncio.gather(*(compute(i, r) for i, r in pending.values()))
    for task in tasks:
        for request in task.gold:
            if request.settle is not None:
                request.settle()


async def _compute_sort_keys(scoring: ScoringService, request: GoldRequest, context: SqlContext, caller: str) -> None:
    """The gold's sort keys (`sandbox.sql.order`): what fails here leaves the order strict."""
    try:
        reply = await scoring.run_job(request.job, {}, request.task_ms, caller)
    except SandboxFailure:
        return  # not cached: the next batch tries again
    files = len(request.job.get("databases") or request.job["schemas"])
    observed = executions(reply.records, files) if reply.meta.get("ending") != WORKER_LOST else None
    context.sort_keys[request.key] = [e.result for e in observed] if observed is not None else []


async def ensure_references(scoring: ScoringService, tasks: list[PreparedTask], caller: str = "") -> None:
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
            await scoring.triton.reference(request, caller)
        except ReferenceFailed as exc:
            raise InvalidTask(f"tasks[{index}].triton.reference", str(exc)) from None

    await asyncio.gather(*(compute(i, r) for i, r in pending.values()))
