import json
import math

import pytest

from sandbox.python.asserts import InvalidTests, plan_asserts
from sandbox.python.plan import plan_assert_tests

HUMANEVAL_STYLE = """
METADATA = {"author": "x"}

def check(candidate):
    assert candidate([1, 2], 3) == (1, 2), "with a message"
    assert (4, 5) == candidate([4, 5], 9)
    assert abs(candidate([0.5], 1) - 0.25) < 1e-6
    assert candidate([], 0) is None
    assert candidate([9], 9)
    assert not candidate([0], 1)
    assert candidate([7], 1) != "seven"
    assert True, "this prints if this assert fails"
"""


def test_humaneval_style_splits_into_calls_and_trusted_predicates():
    plan = plan_asserts(HUMANEVAL_STYLE, "pair")
    assert not plan.whole
    assert plan.calls == (
        ([[1, 2], 3], {}),
        ([[4, 5], 9], {}),
        ([[0.5], 1], {}),
        ([[], 0], {}),
        ([[9], 9], {}),
        ([[0], 1], {}),
        ([[7], 1], {}),
    )
    assert [t.observations for t in plan.tests] == [(i,) for i in range(7)]  # `assert True` is dropped
    assert plan.tests[0].name.startswith("assert candidate([1, 2], 3) == (1, 2)")


def test_expected_values_never_enter_the_sandbox_job():
    plan = plan_assert_tests("f", "def check(candidate):\n    assert candidate(2) == 'zq-secret-answer'\n")
    assert plan.mode == "exprs"
    assert "zq-secret-answer" not in json.dumps(plan.job) + json.dumps(plan.secret)
    assert plan.job["requests"] == [{"call": [[2], {"$dict": []}]}]
    # the whole-mode fallback holds the test code for the judge, never for the candidate
    assert plan.fallback is not None and "zq-secret-answer" not in json.dumps(plan.fallback.job)


def test_mbpp_style_top_level_asserts_use_the_function_name():
    plan = plan_asserts("assert remove_occ('hello', 'l') == 'heo'\nassert remove_occ('a', 'a') == ''\n", "remove_occ")
    assert plan.calls == ((["hello", "l"], {}), (["a", "a"], {}))


def test_arguments_are_computed_on_the_trusted_side():
    code = "import math\ndef check(candidate):\n    assert candidate(math.pi, 2 * 3, x='a' * 3) == 3\n"
    plan = plan_asserts(code, "f")
    assert plan.calls == (([math.pi, 6], {"x": "aaa"}),)


@pytest.mark.parametrize(
    "code",
    [
        "def check(candidate):\n    assert candidate(1) == 2 and candidate(2) == 4\n",
        "import math\ndef check(candidate):\n    assert math.isclose(candidate(1), 2.5, rel_tol=1e-3)\n",
        "def check(candidate):\n    assert candidate(2) in [1, 2]\n",
        "def check(candidate):\n    assert sorted(candidate([2, 1])) == [1, 2]\n",
        "def check(candidate):\n    assert candidate(2) == sorted([2, 1])\n",
        "def check(candidate):\n    x = [1, 2]\n    y = tuple(x)\n    assert candidate(y) == x\n",
        "def check(candidate):\n    input = 'hi'\n    assert candidate(input) == 'ih'\n",
    ],
)
def test_more_shapes_split(code):
    assert not plan_asserts(code, "f").whole


@pytest.mark.parametrize(
    "code",
    [
        # expected computed by code, loops, helpers: cannot be split
        "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == i + 1\n",
        "def check(candidate):\n    xs = [2, 1]\n    candidate(xs)\n    assert xs == [1, 2]\n",
        "def check(candidate):\n    xs = [2, 1]\n    assert candidate(xs) == [1, 2]\n",
        "def check(candidate):\n    assert candidate(candidate(1)) == 2\n",
        "def check(candidate):\n    assert all(candidate(x) for x in [1, 2])\n",
        "def helper(x):\n    return x\ndef check(candidate):\n    assert candidate(1) == helper(1)\n",
        "def check(candidate):\n    assert candidate(poly([1, 2])) == 0\n",
    ],
)
def test_unsplittable_tests_run_whole_with_numbered_sites(code):
    plan = plan_asserts(code, "f")
    assert plan.whole and len(plan.sites) == 1
    assert "__rft_assert(0, lambda:" in plan.check_code
    assert "assert " not in plan.check_code


def test_whole_mode_knows_the_helpers_it_needs_from_setup_code():
    plan = plan_asserts("def check(candidate):\n    s = candidate(1)\n    assert poly(s) == 0\n", "f")
    assert plan.externals == ("poly",)


@pytest.mark.parametrize(
    "code, reason",
    [
        ("def check(candidate):\n    pass\n", "no assert"),
        ("def check(candidate:\n", "does not compile"),
    ],
)
def test_invalid_test_code(code, reason):
    with pytest.raises(InvalidTests, match=reason):
        plan_asserts(code, "f")
