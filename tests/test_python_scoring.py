"""Scoring of ordinary candidates through the real service: statuses, partial credit, components."""

from __future__ import annotations

import pytest

from sandbox.api import pb
from tests.helpers import assert_task, call_task, finding_codes, io_task, limits, status_name

SQUARE_TESTS = "def check(candidate):\n" + "".join(f"    assert candidate({i}) == {i * i}\n" for i in range(4))


@pytest.mark.parametrize(
    "code, status, score",
    [
        ("def sq(x):\n    return x * x\n", "PASSED", 1.0),
        ("def sq(x):\n    return x + x\n", "FAILED", 0.5),  # right for 0 and 2 only
        ("def sq(x):\n    return -1\n", "FAILED", 0.0),
        ("def sq(x):\n    return 1 // x * x * x\n", "RUNTIME_ERROR", 0.25),  # ZeroDivisionError on 0, wrong after
        ("def sq(x)\n    return x\n", "SYNTAX_ERROR", 0.0),
        ("import nonexistent_module\ndef sq(x):\n    return x * x\n", "RUNTIME_ERROR", 0.0),
        ("def sq(x):\n    while x == 3:\n        pass\n    return x * x\n", "TIMEOUT", 0.75),
    ],
)
def test_statuses_and_partial_credit(server, client, code, status, score):
    result = client.score(assert_task("sq", code, "sq", SQUARE_TESTS, limits(test_ms=800, task_ms=5000)))
    assert (status_name(result), result.score) == (status, pytest.approx(score)), result.message
    assert result.components["tests_passed"] == pytest.approx(score)
    assert result.backend == server.server.backend.name


def test_per_test_outcomes_explain_failures(client):
    result = client.score(assert_task("sq", "def sq(x):\n    return 1 // x * x * x\n", "sq", SQUARE_TESTS))
    outcomes = [(pb.Status.Name(t.status), t.passed) for t in result.tests]
    assert outcomes == [("RUNTIME_ERROR", False), ("PASSED", True), ("FAILED", False), ("FAILED", False)]
    assert "ZeroDivisionError" in result.tests[0].message
    assert result.tests[2].message == "got 0"  # 1 // 2 * 2 * 2


def test_slow_test_times_out_alone_and_the_rest_still_run(client):
    code = "import time\ndef f(x):\n    if x == 1:\n        time.sleep(30)\n    return x\n"
    result = client.score(call_task("slow", code, "f", [([0], 0), ([1], 1), ([2], 2)], limits(test_ms=500)))
    assert [pb.Status.Name(t.status) for t in result.tests] == ["PASSED", "TIMEOUT", "PASSED"]
    assert status_name(result) == "TIMEOUT" and result.score == pytest.approx(2 / 3)
    assert result.timings.run_ms < 5000


def test_huge_output_is_cut_at_the_limit(client):
    code = "def f(x):\n    print('y' * 100000 * 50)\n    return x\n"
    result = client.score(call_task("loud", code, "f", [([1], 1)], limits(output=64 * 1024)))
    assert status_name(result) == "OUTPUT_LIMIT" and result.score == 0.0
    assert len(result.stdout_excerpt) <= 4096


def test_call_tests_keep_python_types_and_tolerance(client):
    code = "def f(a, b=0, *, scale=1.0):\n    return (a * scale, [b, 0.1 + 0.2])\n"
    task = call_task("types", code, "f", [], limits())
    task.python.call_tests.add(
        args_json="[2]", kwargs_json='{"b": 3, "scale": 0.5}', expected_json='{"$tuple": [1.0, [3, 0.3]]}'
    )
    task.python.call_tests.add(args_json="[2]", expected_json="[2.0, [0, 0.3]]")  # a list is not a tuple
    result = client.score(task)
    assert [t.passed for t in result.tests] == [True, False]


def test_io_tests_compare_whole_stdout(client):
    code = "import sys\nnums = [int(x) for x in sys.stdin.read().split()]\nprint(sum(nums))\nprint(len(nums))\n"
    cases = [("1 2 3", "6\n3\n"), ("10", "10\n1"), ("5 5", "10")]  # the last expects a prefix only
    result = client.score(io_task("io", code, cases))
    assert [t.passed for t in result.tests] == [True, True, False]
    assert status_name(result) == "FAILED"


def test_io_program_may_exit_cleanly(client):
    code = "import sys\nprint(input()[::-1])\nsys.exit(0)\n"
    result = client.score(io_task("io-exit", code, [("abc", "cba")]))
    assert status_name(result) == "PASSED"
    assert "early_exit" not in finding_codes(result)


def test_big_stdin_is_fed_without_deadlock(client):
    data = "x" * (1 << 20)
    code = "import sys\nprint(len(sys.stdin.read()))\n"
    result = client.score(io_task("big-stdin", code, [(data, str(len(data)))]))
    assert status_name(result) == "PASSED", result.message


def test_whole_mode_gives_partial_credit_per_assert_site(client):
    tests = (
        "def check(candidate):\n"
        "    for i in range(5):\n        assert candidate(i) == i * 2\n"
        "    assert candidate(10) == sorted([20])[0]\n"
        "    assert candidate(-1) == abs(-2)\n"
    )
    result = client.score(assert_task("whole", "def d(x):\n    return x * 2\n", "d", tests))
    assert [t.passed for t in result.tests] == [True, True, False]
    assert status_name(result) == "FAILED" and result.score == pytest.approx(2 / 3)


def test_whole_mode_calls_helpers_defined_by_the_setup_code(client):
    prompt = "def poly(xs, x):\n    return sum(c * x**i for i, c in enumerate(xs))\n\ndef root(xs):\n    pass\n"
    code = prompt.replace("    pass\n", "    return 2.0\n")
    tests = (
        "def check(candidate):\n    for xs in ([-2, 1], [-4, 2]):\n        assert abs(poly(xs, candidate(xs))) < 1e-9\n"
    )
    task = assert_task("poly", code, "root", tests)
    task.python.setup_code = prompt
    assert status_name(client.score(task)) == "PASSED"


def test_timings_are_reported(client):
    result = client.score(call_task("t", "def f():\n    return 1\n", "f", [([], 1)]))
    assert result.timings.total_ms >= result.timings.run_ms > 0


@pytest.mark.parametrize(
    "code, status",
    [
        ("raise ValueError('broken at import')\ndef d(x):\n    return x\n", "RUNTIME_ERROR"),
        ("while True:\n    pass\n", "TIMEOUT"),
    ],
)
def test_whole_mode_load_failures_are_reported_once(client, code, status):
    tests = "def check(candidate):\n    for i in range(50):\n        assert candidate(i) == sorted([i])[0]\n"
    result = client.score(assert_task("whole-load", code, "d", tests, limits(test_ms=700, task_ms=10000)))
    assert status_name(result) == status and result.score == 0.0
    assert result.timings.run_ms < 5000  # not 50 reloads
