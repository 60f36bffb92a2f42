"""SQL: a read-only query, scored against the gold query's results on the trusted side.

Order of work for one task (`sandbox.sql.plan` prepares it): the gold's results on every
database file, computed once per service and shared by every task with that gold (a
`Memo`: the task is invalid if the gold fails on a required file); on a database with
automatic variants, the ones where the gold's answer differs from the base's; the gold's
sort keys, where rows may tie (optional: a failure leaves the order strict); then the
candidate's job, and `rewards.sql` compares. PostgreSQL queries run on their server
(its permission system is the wall) through a lane of their own, not in a sandbox.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rewards.model import Finding, Severity, Status, Verdict
from rewards.sql import ResultSet, score_sql
from sandbox.api import pb
from sandbox.audit import AuditLog
from sandbox.backends.policy import Mount
from sandbox.host import Host
from sandbox.lanes import Lane
from sandbox.language import Language
from sandbox.pool import WORKER_LOST, SandboxFailure
from sandbox.sql.order import sort_keys
from sandbox.sql.plan import SqlContext, SqlPlan, executions, prepare_sql
from sandbox.sql.postgres import PostgresExecutor
from sandbox.steps import Flow, InvalidTask, Job, Memo
from sandbox.wire.messages import Ending, Kind, Mode
from sandbox.worker import RunnerReply, refusal

log = logging.getLogger(__name__)
_NO_DISTINGUISHING_VARIANT = Finding(
    "no_distinguishing_variant",
    Severity.INFO,
    "the gold's answer is the same on every automatic variant: this task's reward "
    "cannot tell an answer that is right by coincidence from a right query",
)


class PostgresLane:
    """Queries on a PostgreSQL server; records shaped as the sandbox runner's."""

    def __init__(self) -> None:
        self.executor = PostgresExecutor()

    async def run(self, job: Job, caller: str) -> RunnerReply:
        started = time.perf_counter()
        records = await self.executor.run(dict(job.frame))
        if any(r.get("kind") == Kind.DB_ERROR for r in records):
            raise SandboxFailure("the PostgreSQL server failed (not the candidate)")
        meta = {"mode": Mode.SQL, "ending": Ending.CLOSED, "elapsed_ms": (time.perf_counter() - started) * 1000}
        reply = RunnerReply(meta, records)
        refused = refusal(reply)  # its records are ours: one its mode does not produce is our bug
        if refused is not None:
            raise SandboxFailure(refused)
        return reply

    def admit(self, caller: str, count: int) -> None:
        """Its tasks are admitted by the main pool's queue, like every SQL task."""

    async def start(self) -> None:
        """Connections are made on first use."""

    def abandon(self, reason: str) -> None:
        """Nothing waits here past its statement timeout: a drain lets its queries end."""

    async def close(self) -> None:
        await self.executor.close()


class SqlLanguage(Language):
    name = "sql"
    enum = pb.SQL

    def __init__(self, context: SqlContext | None = None) -> None:
        self.context = context or SqlContext()
        self.postgres = PostgresLane()
        self.audit: AuditLog | None = None

    def attach(self, host: Host) -> None:
        self.audit = host.audit

    def mounts(self) -> Sequence[Mount]:
        return self.context.registry.mounts()  # registered databases, read-only in every sandbox

    def lanes(self) -> Mapping[str, Lane]:
        return {"postgres": self.postgres}

    def prepare(self, task: Any, limits: dict[str, int]) -> SqlPlan | Verdict:
        return prepare_sql(task, self.context, limits)

    def flow(self, plan: SqlPlan) -> Flow:
        task_ms = plan.limits["task_ms"]
        gold: list[ResultSet | None] = [plan.expected]
        chosen = list(range(len(plan.job[plan.where])))  # which gold results the job's databases have
        findings = list(plan.findings)
        job = plan.job
        if plan.gold is not None:
            gold_job = Job(plan.gold_job(plan.gold.query), task_ms, lane=plan.lane)
            gold = yield Memo(("sql-gold", plan.gold), gold_job, functools.partial(_gold_results, plan))
            if plan.variants:
                picked = self.context.distinguishing(plan.gold, gold, plan.order, plan.rel_tol, plan.abs_tol, plan.keep)
                chosen = [0, *picked]
                job = {**job, plan.where: [plan.every_file[i] for i in chosen]}
                if not picked:
                    findings.append(_NO_DISTINGUISHING_VARIANT)
            gold = [gold[i] for i in chosen]
        found: list[ResultSet | None] = []
        if plan.sort_key is not None:
            keys_job = Job(plan.gold_job(plan.sort_key.query), task_ms, lane=plan.lane)
            try:
                found = yield Memo(("sql-sort-keys", plan.sort_key), keys_job, functools.partial(_sort_keys, plan))
            except SandboxFailure:
                found = []  # not kept: the next request tries again; this task's order stays strict
        reply = yield Job(job, task_ms, lane=plan.lane)
        return _score(plan, gold, chosen, found, findings, reply)

    async def after_batch(self) -> None:
        """Registered files must be exactly as registered: a change is a critical finding."""
        for database in self.context.registry.databases.values():
            changed = await asyncio.to_thread(database.changed_files)
            if changed:
                log.error("database_modified", extra={"fields": {"database": database.name, "files": changed}})
                if self.audit is not None:
                    self.audit.record_event("database_modified", f"database {database.name!r} changed: {changed}")


def _gold_results(plan: SqlPlan, reply: RunnerReply) -> list[ResultSet | None]:
    """The gold's result on every file. A gold that does not run cleanly on a required file
    makes the task invalid; on an automatic variant it leaves that variant unused (None)."""
    assert plan.gold is not None
    database = plan.gold.database
    if reply.meta.get("ending") == WORKER_LOST:
        raise InvalidTask(
            "sql.gold_sql", f"the gold query made the sandbox fail on {database!r}: {reply.meta.get('reason')}"
        )
    observed = executions(reply.records, len(plan.every_file))
    if observed is None:
        raise SandboxFailure("the sandbox did not report the reference query on every database file")
    results: list[ResultSet | None] = []
    for number, execution in enumerate(observed):
        if execution.result is None or execution.result.truncated:
            if plan.required and number >= plan.required:
                results.append(None)
                continue
            why = execution.error or ("result too large" if execution.result else execution.kind)
            raise InvalidTask(
                "sql.gold_sql",
                f"the gold query fails on database {database!r} (file #{number}): {execution.kind}: {why}",
            )
        results.append(execution.result)
    return results


def _sort_keys(plan: SqlPlan, reply: RunnerReply) -> list[ResultSet | None]:
    """The gold's sort keys (`sandbox.sql.order`): what fails here leaves the order strict."""
    observed = executions(reply.records, len(plan.every_file)) if reply.meta.get("ending") != WORKER_LOST else None
    return [e.result for e in observed] if observed is not None else []


def _score(
    plan: SqlPlan,
    gold: list[ResultSet | None],
    chosen: list[int],
    found: list[ResultSet | None],
    findings: list[Finding],
    reply: RunnerReply,
) -> Verdict:
    observed = executions(reply.records, len(chosen))
    if observed is None:
        return Verdict(Status.SANDBOX_ERROR, 0.0, message="the sandbox did not report every database")
    if any(g is None for g in gold):
        return Verdict(Status.SANDBOX_ERROR, 0.0, message="a reference result is missing")
    ties = []
    if plan.sorting is not None:
        files = chosen if plan.expected is None else [0]
        ties = [
            sort_keys(plan.sorting, gold[n], found[f] if f < len(found) else None)  # type: ignore[arg-type]
            for n, f in enumerate(files)
        ]
    return score_sql(
        observed,
        gold,  # type: ignore[arg-type]
        order_matters=plan.order,
        rel_tol=plan.rel_tol,
        abs_tol=plan.abs_tol,
        weights=plan.weights,
        findings=findings,
        reads_no_table=plan.literal,
        sort_keys=ties,
    )
