"""Python: tests planned outside the sandbox, one job, scored on the trusted side.

Call tests and split asserts run as function calls the runner makes and observes itself;
stdin/stdout tests as whole programs; asserts that cannot be split run whole in the
isolated harness process, with the tests as the job's secret part. A split-assert task whose
candidate returns values that are not data (scoring raises `NeedsWholeRun`) runs once more
with the same tests whole.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass
from typing import Any

from rewards.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from rewards.model import Finding, NeedsWholeRun, Verdict
from rewards.python import score_python
from sandbox.api import pb
from sandbox.host import Host
from sandbox.language import Language
from sandbox.python.plan import (
    MAX_TESTS,
    TestPlan,
    check_setup_code,
    plan_assert_tests,
    plan_call_tests,
    plan_io_tests,
)
from sandbox.python.static_checks import CandidateSyntaxError, check_python
from sandbox.steps import Flow, InvalidTask, Job


@dataclass(frozen=True)
class PythonPlan:
    tests: TestPlan
    code: str
    limits: dict[str, int]
    findings: tuple[Finding, ...]
    rel_tol: float
    abs_tol: float

    def job(self, tests: TestPlan) -> Job:
        return Job({**tests.job, "code": self.code, "limits": self.limits}, self.limits["task_ms"], tests.secret)

    def score(self, tests: TestPlan, records: list[Any], meta: dict[str, Any]) -> Verdict:
        whole, defer = tests.mode == "whole", tests.fallback is not None
        return score_python(tests.expectations, records, meta, self.findings, self.rel_tol, self.abs_tol, whole, defer)


class PythonLanguage(Language):
    name = "python"
    enum = pb.PYTHON

    def __init__(self) -> None:
        self.max_code_bytes = 256 * 1024

    def attach(self, host: Host) -> None:
        self.max_code_bytes = host.config.max_code_bytes

    def prepare(self, task: Any, limits: dict[str, int]) -> PythonPlan | Verdict:
        if task.WhichOneof("spec") != "python":
            raise InvalidTask("python", "a PYTHON task needs a python spec")
        spec = task.python
        tests = self._tests(spec)
        if tests.mode == "io":
            limits = {**limits, "output_bytes": max(limits["output_bytes"], _io_output_bytes(tests))}
        rel_tol = _tolerance(spec.rel_tol, DEFAULT_REL_TOL, "python.rel_tol")
        abs_tol = _tolerance(spec.abs_tol, DEFAULT_ABS_TOL, "python.abs_tol")
        try:
            findings = tuple(check_python(task.code, io_program=tests.mode == "io"))
        except CandidateSyntaxError as exc:
            return Verdict.does_not_compile(exc, ("compiles", "tests_passed"))
        return PythonPlan(tests, task.code, limits, findings, rel_tol, abs_tol)

    def flow(self, plan: PythonPlan) -> Flow:
        reply = yield plan.job(plan.tests)
        try:
            return plan.score(plan.tests, reply.records, reply.meta)
        except NeedsWholeRun:  # values that are not data: the same tests, whole, in the isolated harness
            assert plan.tests.fallback is not None, "only tests with a fallback defer"
            reply = yield plan.job(plan.tests.fallback)
            return plan.score(plan.tests.fallback, reply.records, reply.meta)

    def _tests(self, spec: Any) -> TestPlan:
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
            if len(spec.setup_code.encode("utf-8")) > self.max_code_bytes:
                raise InvalidTask("python.setup_code", f"exceeds {self.max_code_bytes} bytes")
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


def _io_output_bytes(plan: TestPlan) -> int:
    """Output a stdin/stdout job may print: never less than its expected outputs need (their
    sum, as every test's output counts against the task's budget, plus room for a newline
    and a little stderr per test), so a correct program is not failed by the cap."""
    expected = sum(len(str(e.expected).encode("utf-8")) for e in plan.expectations)
    return expected + len(plan.expectations) * 4096 + 65536
