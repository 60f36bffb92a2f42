"""Drive languages' flows (`sandbox.language`) over lanes: the core of scoring.

A request's tasks go through two phases. `start` runs every task's flow up to its first
job, concurrently: what a flow asks for before it (its `Memo` prerequisites: gold
results, references) is computed then, once per key, so a task whose reference is
wrong fails the whole request (`InvalidTask`) before any candidate runs. `score` then
runs each task's jobs on their lanes, feeds the replies to its flow, and answers the
trusted verdict, audited, as a v1 `Result`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from rewards.model import Finding, Severity, Status, Verdict
from sandbox.api import pb
from sandbox.audit import AuditLog
from sandbox.call_context import CallContext
from sandbox.intake import Prepared
from sandbox.lanes import Lane
from sandbox.memo import MemoStore
from sandbox.pool import WORKER_LOST, SandboxFailure
from sandbox.results import to_proto
from sandbox.steps import Flow, InvalidTask, Job, Memo
from sandbox.worker import RunnerReply

log = logging.getLogger(__name__)


@dataclass
class Started:
    """A task whose flow waits at its first job (or that has its verdict already)."""

    task: Prepared
    flow: Flow | None = None
    job: Job | None = None
    verdict: Verdict | None = None


class Observer(Protocol):
    """Told of every task the driver takes and every result it answers (`sandbox.metrics`
    counts them): here, where a verdict becomes a Result, each is seen exactly once."""

    def accepted(self, language: str, count: int) -> None: ...

    def scored(
        self, language: str, verdict: Verdict, ran: bool, queue_ms: float, run_ms: float, total_ms: float
    ) -> None: ...


class Driver:
    def __init__(
        self,
        lanes: Mapping[str, Lane],
        memo: MemoStore,
        audit: AuditLog,
        backend_name: str,
        observer: Observer | None = None,
    ) -> None:
        self.lanes = lanes
        self.memo = memo
        self.audit = audit
        self.backend_name = backend_name
        self.observer = observer

    async def start(self, tasks: list[Prepared], caller: str = "") -> list[Started]:
        """Every task's prerequisites, computed concurrently. Raises `InvalidTask` naming
        `tasks[i]...` for a task whose prerequisite shows it wrong, `SandboxFailure` when
        the infrastructure could not compute one."""

        async def begin(index: int, task: Prepared) -> Started:
            if task.verdict is not None:
                return Started(task, verdict=task.verdict)
            flow = task.language.flow(task.plan)
            try:
                job, verdict = await self._advance(flow, None, None, caller)
            except InvalidTask as exc:
                raise InvalidTask(f"tasks[{index}].{exc.field}", str(exc).split(": ", 1)[1]) from None
            return Started(task, flow, job, verdict)

        if self.observer is not None:
            for language, count in Counter(task.language.name for task in tasks).items():
                self.observer.accepted(language, count)
        return list(await asyncio.gather(*(begin(i, t) for i, t in enumerate(tasks))))

    async def score(
        self, started: Started, caller: str = "", call: CallContext | None = None, source: pb.Task | None = None
    ) -> pb.Result:
        """`caller` names the line of each lane's fair queue the task's jobs wait in; `call`
        and `source` (the task as sent) are what the audit trail records with the verdict."""
        arrived = time.perf_counter()
        run_ms = 0.0
        try:
            verdict, run_ms = await self._finish(started, caller)
        except SandboxFailure as exc:
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=str(exc))
        except Exception as exc:
            log.exception("scoring task %s failed", started.task.id)
            verdict = Verdict(Status.SANDBOX_ERROR, 0.0, message=f"internal error: {type(exc).__name__}")
        task = started.task
        self.audit.record(task.id, task.language.name, task.code, verdict, call, source)
        total_ms = (time.perf_counter() - arrived) * 1000
        ran = started.job is not None
        queue_ms = max(total_ms - run_ms, 0.0) if ran else 0.0
        if self.observer is not None:
            self.observer.scored(task.language.name, verdict, ran, queue_ms, run_ms, total_ms)
        return to_proto(task.id, verdict, self.backend_name, queue_ms, run_ms, total_ms)

    async def _finish(self, started: Started, caller: str) -> tuple[Verdict, float]:
        """Run the flow's jobs to its verdict; the milliseconds its jobs' runners took."""
        flow, job, verdict, run_ms = started.flow, started.job, started.verdict, 0.0
        while job is not None:
            assert flow is not None
            try:
                reply = await self.lanes[job.lane].run(job, caller)
            except SandboxFailure as failure:
                job, verdict = await self._advance(flow, None, failure, caller)
                continue
            elapsed = reply.meta.get("elapsed_ms")
            run_ms += float(elapsed) if isinstance(elapsed, (int, float)) else 0.0
            if reply.meta.get("ending") == WORKER_LOST:
                flow.close()
                return worker_lost_verdict(reply.meta), run_ms
            job, verdict = await self._advance(flow, reply, None, caller)
        assert verdict is not None
        return verdict, run_ms

    async def _advance(
        self, flow: Flow, value: Any, failure: BaseException | None, caller: str
    ) -> tuple[Job | None, Verdict | None]:
        """Send `value` (or throw `failure`) into the flow and serve its memos until it
        yields a job (returned) or returns its verdict."""
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(value)
            except StopIteration as stop:
                return None, stop.value
            failure = None
            if isinstance(step, Job):
                return step, None
            try:
                value = await self._memo(step, caller)
            except (SandboxFailure, InvalidTask) as exc:
                failure = exc

    async def _memo(self, memo: Memo[Any], caller: str) -> Any:
        async def compute() -> Any:
            reply: RunnerReply = await self.lanes[memo.job.lane].run(memo.job, caller)
            return memo.read(reply)

        return await self.memo.get(memo.key, compute, memo.size)


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
