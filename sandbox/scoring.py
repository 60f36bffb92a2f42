"""Score prepared tasks: run them on the pool, judge the observations, audit findings.

This is the seam between transport (the gRPC server, the CLI's embedded mode) and
execution; it speaks the v1 messages on its outside and plain data inside.
"""

from __future__ import annotations

import logging
import time

from rewards.model import Status, Verdict
from rewards.python import score_python
from sandbox.api import pb
from sandbox.audit import AuditLog
from sandbox.pool import Job, SandboxFailure, WorkerPool
from sandbox.runner import framing
from sandbox.tasks import PreparedTask

log = logging.getLogger(__name__)
_RUNNER_SLACK_SECONDS = 2.0


class ScoringService:
    def __init__(self, pool: WorkerPool, audit: AuditLog, backend_name: str) -> None:
        self.pool = pool
        self.audit = audit
        self.backend_name = backend_name

    async def score(self, task: PreparedTask) -> pb.Result:
        arrived = time.perf_counter()
        run_ms = queue_ms = 0.0
        try:
            if task.syntax_error is not None:
                verdict = Verdict(
                    Status.SYNTAX_ERROR,
                    0.0,
                    components={"compiles": 0.0, "tests_passed": 0.0},
                    message=f"does not compile: {task.syntax_error}",
                )
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

    async def _run(self, task: PreparedTask, arrived: float) -> tuple[Verdict, float, float]:
        plan = task.plan
        job = Job(
            framing.pack({**plan.job, "code": task.code, "limits": task.limits}),
            framing.pack(plan.secret),
            timeout=task.limits["task_ms"] / 1000 + _RUNNER_SLACK_SECONDS,
        )
        reply = await self.pool.run(job)
        runner_ms = reply.meta.get("elapsed_ms")
        run_ms = float(runner_ms) if isinstance(runner_ms, (int, float)) else 0.0
        queue_ms = max((time.perf_counter() - arrived) * 1000 - run_ms, 0.0)
        verdict = score_python(
            plan.expectations,
            reply.records,
            reply.meta,
            task.static_findings,
            task.rel_tol,
            task.abs_tol,
            whole=plan.mode == "whole",
        )
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
