"""Builders for tasks and small assertions shared by the tests."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from sandbox.api import pb

MiB = 1 << 20


def limits(test_ms: int = 0, task_ms: int = 0, memory: int = 0, output: int = 0) -> pb.Limits:
    return pb.Limits(test_timeout_ms=test_ms, task_timeout_ms=task_ms, memory_bytes=memory, output_bytes=output)


def call_task(
    task_id: str,
    code: str,
    entry_point: str,
    cases: list[tuple[list[Any], Any]],
    lim: pb.Limits | None = None,
    **spec: Any,
) -> pb.Task:
    """Function-call tests: cases are (args, expected) with plain-JSON values."""
    tests = [pb.CallTest(args_json=json.dumps(args), expected_json=json.dumps(expected)) for args, expected in cases]
    return pb.Task(
        id=task_id,
        language=pb.PYTHON,
        code=code,
        limits=lim,
        python=pb.PythonSpec(entry_point=entry_point, call_tests=tests, **spec),
    )


def assert_task(task_id: str, code: str, entry_point: str, test_code: str, lim: pb.Limits | None = None) -> pb.Task:
    return pb.Task(
        id=task_id,
        language=pb.PYTHON,
        code=code,
        limits=lim,
        python=pb.PythonSpec(entry_point=entry_point, assert_code=test_code),
    )


def io_task(task_id: str, code: str, cases: list[tuple[str, str]], lim: pb.Limits | None = None) -> pb.Task:
    tests = [pb.IoTest(stdin=stdin, expected_stdout=out) for stdin, out in cases]
    return pb.Task(id=task_id, language=pb.PYTHON, code=code, limits=lim, python=pb.PythonSpec(io_tests=tests))


def status_name(result: pb.Result) -> str:
    return pb.Status.Name(result.status)


def finding_codes(result: pb.Result) -> set[str]:
    return {f.code for f in result.findings}


HEALTHY_CODE = "def add(a, b):\n    return a + b\n"


def healthy_task(task_id: str = "healthy") -> pb.Task:
    """A plain correct task: run after an attack to show the service is unaffected."""
    return call_task(task_id, HEALTHY_CODE, "add", [([1, 2], 3), ([-1, 1], 0), (["a", "b"], "ab")])


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll until `predicate()` holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
