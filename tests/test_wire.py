"""The typed wire: one set of names on both sides, and unknown messages are errors.

Who writes a mode's records decides what an unknown one means. Calls, io, whole, SQL and
ping records come from trusted code (the runner, the isolated harness, the engine's child):
an unknown record there is our bug, SANDBOX_ERROR, never a verdict on the candidate.
Triton records are written in the candidate's own process: an unknown one is a forgery
(REJECTED, forged_report), never SANDBOX_ERROR. A job of a mode the runner does not know
is refused by the runner itself: the service sent it, so it is SANDBOX_ERROR too.
"""

from __future__ import annotations

import asyncio
import typing
from typing import Any

import pytest

import sandbox.worker
from rewards.model import Status
from rewards.triton import score_triton
from sandbox.backends.policy import policy_for
from sandbox.config import ServiceConfig
from sandbox.pool import Job, SandboxFailure, WorkerPool
from sandbox.wire import framing
from sandbox.wire.messages import FORGEABLE, MODES, RECORDS, Mode, ModeName, Tag, TagName, unexpected_records
from sandbox.worker import RunnerReply, refusal
from tests.conftest import make_backend
from tests.helpers import call_task, status_name
from tests.test_triton_scoring import CPU_RULES, REFERENCE, candidate_records

LIMITS = {
    "task_ms": 5000,
    "test_ms": 5000,
    "memory_bytes": 256 << 20,
    "max_processes": 8,
    "max_open_files": 64,
    "max_file_bytes": 1 << 20,
    "output_bytes": 1 << 16,
}


def _names(namespace: type) -> set[str]:
    return {value for name, value in vars(namespace).items() if not name.startswith("_")}


def test_every_mode_names_the_records_it_produces_and_every_tag_has_a_writer() -> None:
    assert set(RECORDS) == MODES == _names(Mode) == set(typing.get_args(ModeName))
    assert set().union(*RECORDS.values()) == _names(Tag) == set(typing.get_args(TagName))
    assert FORGEABLE == {Mode.TRITON}


@pytest.mark.parametrize(
    ("mode", "records", "why"),
    [
        (Mode.CALLS, [{"t": Tag.TEST, "i": 0, "kind": "value", "value": 1}, {"t": "tset"}], "record 1 is 'tset'"),
        (Mode.IO, [{"t": Tag.SITE, "site": 0, "runs": 1, "fails": 0}], "record 0 is 'site'"),
        (Mode.WHOLE, [{"t": Tag.TEST, "i": 0, "kind": "value", "value": 1}], "a whole job does not produce"),
        (Mode.SQL, [{"t": Tag.TRIAL, "index": 0}], "a sql job does not produce"),
        (Mode.PING, [["pong"]], "record 0 is 'list'"),
        ("cals", [{"t": Tag.DONE}], "which is no mode"),
        (None, [], "which is no mode"),
    ],
)
def test_a_record_a_trusted_mode_cannot_produce_is_refused(mode: Any, records: list[Any], why: str) -> None:
    problem = refusal(RunnerReply({"mode": mode, "ending": "closed"}, records))
    assert problem is not None and why in problem, problem


def test_every_record_a_trusted_mode_produces_passes() -> None:
    for mode, tags in RECORDS.items():
        assert unexpected_records(mode, [{"t": tag} for tag in sorted(tags)]) is None, mode


def test_a_triton_reply_is_left_to_its_scorer_which_rejects_an_unknown_record() -> None:
    """The candidate's process writes Triton records: an unknown one cannot be ours."""
    records = candidate_records([[1, 2], [3, 4]])
    forged = [*records[:1], {"t": "sql", "i": 0, "kind": "ok"}, *records[1:]]
    meta = {"mode": Mode.TRITON, "ending": "closed"}
    assert refusal(RunnerReply(meta, forged)) is None
    verdict = score_triton(REFERENCE, forged, meta, [], CPU_RULES)
    assert (verdict.status, verdict.score) == (Status.REJECTED, 0.0)
    assert [f.code for f in verdict.findings] == ["forged_report"]
    assert score_triton(REFERENCE, records, meta, [], CPU_RULES).status is Status.PASSED


def test_a_refused_job_is_a_sandbox_failure_and_costs_no_worker(backend_name: str) -> None:
    """A real runner on each backend: a job whose mode it does not know runs nothing."""

    async def run() -> tuple[str, Any, RunnerReply]:
        pool = WorkerPool(make_backend(backend_name), policy_for(ServiceConfig()), 1)
        await pool.start()
        try:
            job = {"mode": "cals", "entry_point": "f", "requests": [], "code": "def f():\n    return 1\n"}
            with pytest.raises(SandboxFailure) as refused:
                await pool.run(Job(framing.pack({**job, "limits": LIMITS}), framing.pack({}), 10.0))
            stats = pool.stats
            ping = await pool.run(Job(framing.pack({"mode": Mode.PING, "limits": LIMITS}), framing.pack({}), 10.0))
            return str(refused.value), stats, ping
        finally:
            await pool.close()

    message, stats, ping = asyncio.run(run())
    assert "the runner refused the job: unknown job mode 'cals'" in message
    assert (stats.worker_failures, stats.control_jobs) == (0, 0)
    assert ping.meta["mode"] == Mode.PING and [r["t"] for r in ping.records] == [Tag.PONG, Tag.EXIT]


def test_an_unknown_record_from_the_runner_is_sandbox_error_not_a_verdict(client, monkeypatch) -> None:
    """As if the trusted harness wrote a record of a tag no calls job has (a typo of ours):
    the task is not scored on the records around it."""
    parse = sandbox.worker._parse_records
    monkeypatch.setattr(sandbox.worker, "_parse_records", lambda body: [*parse(body), {"t": "tset", "i": 0}])
    result = client.score(call_task("typo", "def f(x):\n    return x\n", "f", [([1], 1)]))
    assert (status_name(result), result.score) == ("SANDBOX_ERROR", 0.0), result.message
    assert "'tset'" in result.message and "calls job does not produce" in result.message
