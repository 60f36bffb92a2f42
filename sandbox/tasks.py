"""Validate a request's tasks and prepare them to run, before anything is queued.

Every problem with a request is an `InvalidTask` naming the field (`tasks[3].limits.
memory_bytes: ...`), raised before any task of the request runs, so a bad request
costs nothing and loses nothing: the caller fixes it and sends it again.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewards.model import Verdict
from rewards.python import score_python
from sandbox.api import pb
from sandbox.config import LimitBounds, ServiceConfig
from sandbox.python.plan import (
    MAX_TESTS,
    InvalidTask,
    TestPlan,
    check_setup_code,
    plan_assert_tests,
    plan_call_tests,
    plan_io_tests,
)
from sandbox.python.static_checks import CandidateSyntaxError, check_python

if TYPE_CHECKING:
    from sandbox.sql.plan import GoldRequest, SqlContext
    from sandbox.triton.plan import TritonPlan

_MAX_ID = 256
Judge = Callable[[list[Any], dict[str, Any]], Verdict]


@dataclass(frozen=True)
class PreparedTask:
    """A task ready to run: the sandbox job, and how to score what the sandbox observed."""

    id: str
    language: str
    code: str  # the candidate as sent (what the audit log hashes)
    limits: dict[str, int]
    job: dict[str, Any]  # the public job frame: inputs only, never expected values
    secret: dict[str, Any]  # whole-mode Python tests (they hold expected values)
    judge: Judge  # trusted scoring: (records, runner meta) -> Verdict
    early: Verdict | None = None  # decided without running (syntax error, static rejection)
    gold: tuple[GoldRequest, ...] = field(default=())  # SQL: reference results needed first
    triton: TritonPlan | None = None  # Triton: its reference and candidate jobs (the lane runs them)
    # Python split asserts: the job, secret and judge of the same tests run whole, for when
    # the candidate's values are not data (scoring raises NeedsJudge)
    fallback: tuple[dict[str, Any], dict[str, Any], Judge] | None = None


def _bounded(value: int, bounds: LimitBounds, field: str) -> int:
    if value < 0:
        raise InvalidTask(field, f"must not be negative (got {value})")
    if value == 0:
        return bounds.default
    if value < bounds.minimum or value > bounds.maximum:
        raise InvalidTask(field, f"must be between {bounds.minimum} and {bounds.maximum} (got {value})")
    return value


def resolve_limits(limits: Any, config: ServiceConfig) -> dict[str, int]:
    resolved = {
        "test_ms": _bounded(limits.test_timeout_ms, config.test_timeout_ms, "limits.test_timeout_ms"),
        "task_ms": _bounded(limits.task_timeout_ms, config.task_timeout_ms, "limits.task_timeout_ms"),
        "memory_bytes": _bounded(limits.memory_bytes, config.memory_bytes, "limits.memory_bytes"),
        "output_bytes": _bounded(limits.output_bytes, config.output_bytes, "limits.output_bytes"),
        "max_processes": config.max_processes,
        "max_open_files": config.max_open_files,
        "max_file_bytes": config.max_file_bytes,
    }
    resolved["test_ms"] = min(resolved["test_ms"], resolved["task_ms"])
    return resolved


def _python_plan(spec: Any, config: ServiceConfig) -> TestPlan:
    kinds = [
        name
        for name, present in (
            ("call_tests", len(spec.call_tests)),
            ("io_tests", len(spec.io_tests)),
            ("assert_code", spec.assert_code.strip()),
        )
        if present
    ]
    if not kinds:
        raise InvalidTask("python", "needs tests: call_tests, io_tests or assert_code")
    if len(kinds) > 1:
        raise InvalidTask("python", f"give one kind of tests, not {' and '.join(kinds)}")
    count = len(spec.call_tests) or len(spec.io_tests)
    if count > MAX_TESTS:
        raise InvalidTask(f"python.{kinds[0]}", f"{count} tests exceed the limit of {MAX_TESTS}")
    if kinds[0] != "io_tests" and (not spec.entry_point.isidentifier() or keyword.iskeyword(spec.entry_point)):
        raise InvalidTask("python.entry_point", f"must be a Python identifier (got {spec.entry_point!r})")
    if spec.setup_code:
        if kinds[0] != "assert_code":
            raise InvalidTask("python.setup_code", "applies to assert_code tests only")
        if len(spec.setup_code.encode("utf-8")) > config.max_code_bytes:
            raise InvalidTask("python.setup_code", f"exceeds {config.max_code_bytes} bytes")
        if "\x00" in spec.setup_code:
            raise InvalidTask("python.setup_code", "contains NUL bytes")
        check_setup_code(spec.setup_code)
    if kinds[0] == "call_tests":
        return plan_call_tests(
            spec.entry_point, tuple((t.args_json, t.kwargs_json, t.expected_json) for t in spec.call_tests)
        )
    if kinds[0] == "io_tests":
        return plan_io_tests(tuple((t.stdin, t.expected_stdout) for t in spec.io_tests))
    return plan_assert_tests(spec.entry_point, spec.assert_code, spec.setup_code)


def _tolerance(value: float, default: float, field: str) -> float:
    if value != value or value < 0 or value > 1:  # NaN or out of range
        raise InvalidTask(field, f"must be within [0, 1] (got {value})")
    return value or default


def _prepare_python(task: Any, config: ServiceConfig, limits: dict[str, int]) -> PreparedTask:
    if task.WhichOneof("spec") != "python":
        raise InvalidTask("python", "a PYTHON task needs a python spec")
    spec = task.python
    plan = _python_plan(spec, config)
    if plan.mode == "io":
        limits = {**limits, "output_bytes": max(limits["output_bytes"], _io_output_bytes(plan))}
    from rewards.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL

    rel_tol = _tolerance(spec.rel_tol, DEFAULT_REL_TOL, "python.rel_tol")
    abs_tol = _tolerance(spec.abs_tol, DEFAULT_ABS_TOL, "python.abs_tol")
    job = {**plan.job, "code": task.code, "limits": limits}
    try:
        findings = tuple(check_python(task.code, io_program=plan.mode == "io"))
    except CandidateSyntaxError as exc:
        early = Verdict.does_not_compile(exc, ("compiles", "tests_passed"))
        return PreparedTask(task.id, "python", task.code, limits, job, plan.secret, never_judged, early)

    def judge_with(tests: TestPlan) -> Judge:
        def judge(records: list[Any], meta: dict[str, Any]) -> Verdict:
            whole, defer = tests.mode == "whole", tests.fallback is not None
            return score_python(tests.expectations, records, meta, findings, rel_tol, abs_tol, whole, defer)

        return judge

    fallback = None
    if plan.fallback is not None:
        whole_job = {**plan.fallback.job, "code": task.code, "limits": limits}
        fallback = (whole_job, plan.fallback.secret, judge_with(plan.fallback))
    return PreparedTask(task.id, "python", task.code, limits, job, plan.secret, judge_with(plan), fallback=fallback)


def _io_output_bytes(plan: TestPlan) -> int:
    """Output a stdin/stdout job may print: never less than its expected outputs need (their
    sum, as every test's output counts against the task's budget, plus room for a newline
    and a little stderr per test), so a correct program is not failed by the cap."""
    expected = sum(len(str(e.expected).encode("utf-8")) for e in plan.expectations)
    return expected + len(plan.expectations) * 4096 + 65536


def never_judged(records: list[Any], meta: dict[str, Any]) -> Verdict:
    raise AssertionError("a task decided before running is never judged")


def prepare(task: Any, config: ServiceConfig, sql: SqlContext | None = None) -> PreparedTask:
    if not task.id:
        raise InvalidTask("id", "is required")
    if len(task.id) > _MAX_ID:
        raise InvalidTask("id", f"longer than {_MAX_ID} characters")
    language = task.language
    if language == pb.LANGUAGE_UNSPECIFIED:
        raise InvalidTask("language", "is required (PYTHON, SQL or TRITON)")
    if language not in pb.Language.values():
        raise InvalidTask("language", f"unknown language {language}")
    if not task.code.strip():
        raise InvalidTask("code", "is empty")
    if len(task.code.encode("utf-8")) > config.max_code_bytes:
        raise InvalidTask("code", f"exceeds {config.max_code_bytes} bytes")
    if "\x00" in task.code:
        raise InvalidTask("code", "contains NUL bytes")
    limits = resolve_limits(task.limits, config)
    if language == pb.SQL:
        from sandbox.sql.plan import SqlContext, prepare_sql

        return prepare_sql(task, sql or SqlContext(), limits)
    if language == pb.TRITON:
        return _prepare_triton(task, config, limits)
    return _prepare_python(task, config, limits)


def _prepare_triton(task: Any, config: ServiceConfig, limits: dict[str, int]) -> PreparedTask:
    from sandbox.triton.plan import TritonDevice, prepare_triton

    plan, early = prepare_triton(task, limits, TritonDevice(config.triton_device), config.triton_static_gate)
    return PreparedTask(task.id, "triton", task.code, limits, {}, {}, never_judged, early, triton=plan)


def prepare_all(tasks: Any, config: ServiceConfig, sql: SqlContext | None = None) -> list[PreparedTask]:
    if len(tasks) == 0:
        raise InvalidTask("tasks", "is empty")
    if len(tasks) > config.max_batch:
        raise InvalidTask("tasks", f"{len(tasks)} tasks exceed the limit of {config.max_batch} per call")
    prepared, seen = [], set()
    for index, task in enumerate(tasks):
        try:
            item = prepare(task, config, sql)
        except InvalidTask as exc:
            raise InvalidTask(f"tasks[{index}].{exc.field}", str(exc).split(": ", 1)[1]) from None
        if item.id in seen:
            raise InvalidTask(f"tasks[{index}].id", f"duplicates an earlier task's id {item.id!r}")
        seen.add(item.id)
        prepared.append(item)
    return prepared
