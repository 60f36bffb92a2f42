"""RPN: programs in reverse Polish notation over one integer input `x`, e.g. `x x * 1 +`.

A toy has no proto message of its own, so it borrows the Python spec's fields: the
candidate program is the task's `code`, the gold program `python.assert_code`, and each
`python.io_tests[i].stdin` one input. A real language adds its spec to the proto.

It runs as a real language does: the gold's outputs are a `Memo` (computed once per
gold and inputs, a prerequisite: a gold that fails makes the task invalid before any
candidate runs), then the candidate's job, then trusted scoring. Both programs run in
the sandbox through the runner's stdin/stdout mode: a small interpreter, written here
on the trusted side, with the program as a string constant.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

from rewards.model import Status, TestResult, Verdict
from sandbox.language import Language
from sandbox.steps import Flow, InvalidTask, Job, Memo
from sandbox.worker import RunnerReply

RPN_ENUM = 99  # not in the proto's enum: a test-only language
_TOKENS = frozenset("+-*")
_INTERPRETER = """
import sys

def run(program, x):
    stack = []
    for token in program.split():
        if token == "x":
            stack.append(x)
        elif token in ("+", "-", "*"):
            b, a = stack.pop(), stack.pop()
            stack.append(a + b if token == "+" else a - b if token == "-" else a * b)
        else:
            stack.append(int(token))
    (result,) = stack
    return result

print(run(PROGRAM, int(sys.stdin.read())))
"""


def _program(text: str, field: str) -> str:
    tokens = text.split()
    if not tokens or any(t not in _TOKENS and t != "x" and not t.lstrip("-").isdigit() for t in tokens):
        raise InvalidTask(field, "is not an RPN program over x, integers and + - *")
    return " ".join(tokens)


@dataclass(frozen=True)
class RpnPlan:
    candidate: str
    gold: str
    inputs: tuple[str, ...]
    limits: dict[str, int]

    def job(self, program: str) -> Job:
        code = f"PROGRAM = {json.dumps(program)}\n{_INTERPRETER}"
        frame = {"mode": "io", "requests": [{"stdin": s} for s in self.inputs], "code": code, "limits": self.limits}
        return Job(frame, self.limits["task_ms"])


def _outputs(count: int, reply: RunnerReply) -> list[str | None]:
    """What the program printed for each input (None where it did not finish cleanly)."""
    by_index = {r.get("i"): r for r in reply.records if isinstance(r, dict) and r.get("t") == "test"}
    return [
        str(by_index[i].get("stdout", "")).strip() if by_index.get(i, {}).get("kind") == "io" else None
        for i in range(count)
    ]


def _gold_outputs(count: int, reply: RunnerReply) -> list[str]:
    outputs = _outputs(count, reply)
    if any(o is None for o in outputs):
        raise InvalidTask("python.assert_code", "the gold program fails on an input")
    return outputs  # type: ignore[return-value]


class RpnLanguage(Language):
    name = "rpn"
    enum = RPN_ENUM

    def prepare(self, task: Any, limits: dict[str, int]) -> RpnPlan | Verdict:
        spec = task.python
        if not spec.io_tests:
            raise InvalidTask("python.io_tests", "needs inputs")
        inputs = tuple(t.stdin for t in spec.io_tests)
        if not all(i.strip().lstrip("-").isdigit() for i in inputs):
            raise InvalidTask("python.io_tests", "inputs are integers")
        gold = _program(spec.assert_code, "python.assert_code")
        try:
            candidate = _program(task.code, "code")
        except InvalidTask as exc:
            return Verdict(Status.SYNTAX_ERROR, 0.0, message=str(exc))
        return RpnPlan(candidate, gold, inputs, limits)

    def flow(self, plan: RpnPlan) -> Flow:
        count = len(plan.inputs)
        gold = yield Memo(
            ("rpn-gold", plan.gold, plan.inputs), plan.job(plan.gold), functools.partial(_gold_outputs, count)
        )
        reply = yield plan.job(plan.candidate)
        outputs = _outputs(count, reply)
        tests = [
            TestResult(i, out == want, Status.PASSED if out == want else Status.FAILED, f"x = {plan.inputs[i].strip()}")
            for i, (out, want) in enumerate(zip(outputs, gold, strict=True))
        ]
        passed = sum(t.passed for t in tests)
        status = Status.PASSED if passed == count else Status.FAILED
        return Verdict(status, passed / count, tests=tests, components={"tests_passed": passed / count})
