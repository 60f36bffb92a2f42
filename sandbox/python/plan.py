"""Turn a Python task's tests into a sandbox job plus the expectations kept outside it.

The job (what the sandbox sees) holds inputs only: call arguments, expressions to
evaluate, stdin. The expectations (what the trusted side compares against) never
leave the service. Plans depend only on the tests, so they are cached: a trainer sends
the same tests with every completion of a prompt.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sandbox.python.asserts import AssertPlan, InvalidTests, defined_names, plan_asserts
from sandbox.steps import InvalidTask
from sandbox.wire import codec
from sandbox.wire.messages import CallRequest, CallsJob, IoJob, IoRequest, Mode, WholeJob, WholeSecret

MAX_TESTS = 1000


@dataclass(frozen=True)
class Expectation:
    name: str
    op: str  # eq (call tests) | assert (split asserts) | stdout (io tests) | site (whole mode)
    expected: Any = None  # the value, the expected stdout, or the assert's predicate (an ast.expr)
    observations: tuple[int, ...] = ()  # assert: the requests whose results the predicate reads
    names: Mapping[str, Any] = field(default_factory=dict)  # assert: the test's own bindings


@dataclass(frozen=True)
class TestPlan:
    mode: str  # calls | exprs (split asserts, run as calls) | io | whole
    job: CallsJob | IoJob | WholeJob  # the public part of the sandbox job, minus code and limits
    secret: WholeSecret | dict[str, Any]  # whole mode only: the instrumented assert code
    expectations: tuple[Expectation, ...]
    # split asserts: the same tests whole, for a candidate whose values are not data
    fallback: TestPlan | None = None


def _parse_json(text: str, field: str, default: Any) -> Any:
    if not text:
        return default
    try:
        return codec.decode(json.loads(text))
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidTask(field, f"not valid (tagged) JSON: {exc}") from None


@functools.lru_cache(maxsize=4096)
def plan_call_tests(entry_point: str, tests: tuple[tuple[str, str, str], ...]) -> TestPlan:
    requests, expectations = [], []
    for index, (args_json, kwargs_json, expected_json) in enumerate(tests):
        field = f"python.call_tests[{index}]"
        args = _parse_json(args_json, f"{field}.args_json", [])
        kwargs = _parse_json(kwargs_json, f"{field}.kwargs_json", {})
        if not isinstance(args, list):
            raise InvalidTask(f"{field}.args_json", "must be a JSON array")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise InvalidTask(f"{field}.kwargs_json", "must be a JSON object")
        if not expected_json:
            raise InvalidTask(f"{field}.expected_json", "is required")
        expected = _parse_json(expected_json, f"{field}.expected_json", None)
        requests.append(CallRequest(call=[codec.encode(args), codec.encode(kwargs)]))
        call = ", ".join([json.dumps(codec.encode(a))[:60] for a in args] + [f"{k}=..." for k in kwargs])
        expectations.append(Expectation(f"{entry_point}({call})"[:200], "eq", expected))
    return TestPlan(
        "calls", CallsJob(mode=Mode.CALLS, entry_point=entry_point, requests=requests), {}, tuple(expectations)
    )


@functools.lru_cache(maxsize=4096)
def plan_io_tests(tests: tuple[tuple[str, str], ...]) -> TestPlan:
    requests = [IoRequest(stdin=stdin) for stdin, _ in tests]
    expectations = tuple(Expectation(f"stdin #{i}", "stdout", expected) for i, (_, expected) in enumerate(tests))
    return TestPlan("io", IoJob(mode=Mode.IO, requests=requests), {}, expectations)


@functools.lru_cache(maxsize=4096)
def plan_assert_tests(entry_point: str, code: str, setup_code: str = "") -> TestPlan:
    try:
        plan: AssertPlan = plan_asserts(code, entry_point)
    except InvalidTests as exc:
        raise InvalidTask("python.assert_code", str(exc)) from None
    if plan.whole:
        return _whole_plan(entry_point, plan, setup_code)
    try:
        fallback: TestPlan | None = _whole_plan(entry_point, plan, setup_code)
    except InvalidTask:
        fallback = None  # helpers the split tests never needed: a non-data value just fails
    if len(plan.tests) > MAX_TESTS or len(plan.calls) > MAX_TESTS:
        raise InvalidTask("python.assert_code", f"{len(plan.calls)} candidate calls exceed the limit of {MAX_TESTS}")
    job = CallsJob(
        mode=Mode.CALLS,
        entry_point=entry_point,
        requests=[CallRequest(call=[codec.encode(args), codec.encode(kwargs)]) for args, kwargs in plan.calls],
    )
    expectations = tuple(Expectation(t.name, "assert", t.predicate, t.observations, t.names) for t in plan.tests)
    return TestPlan("exprs", job, {}, expectations, fallback)


def _whole_plan(entry_point: str, plan: AssertPlan, setup_code: str) -> TestPlan:
    """Tests that run whole in the isolated harness. Names they use but do not define come from the
    task's trusted setup code (the prompt), never from the candidate's module."""
    try:
        provided = defined_names(setup_code) if setup_code else frozenset()
    except InvalidTests as exc:
        raise InvalidTask("python.setup_code", str(exc)) from None
    missing = sorted(set(plan.externals) - provided - {entry_point})
    if missing:
        raise InvalidTask(
            "python.assert_code",
            f"uses {', '.join(missing)} but defines none of them; give the code that defines them "
            "(e.g. the prompt's helpers) in python.setup_code",
        )
    job = WholeJob(mode=Mode.WHOLE, entry_point=entry_point)
    expectations = tuple(Expectation(name, "site") for name in plan.sites)
    return TestPlan("whole", job, WholeSecret(check_code=plan.check_code, setup_code=setup_code), expectations)


def check_setup_code(setup_code: str) -> None:
    """Setup code must at least compile: it runs in the isolated harness before any test."""
    try:
        ast.parse(setup_code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidTask("python.setup_code", f"does not compile: {exc}") from None
