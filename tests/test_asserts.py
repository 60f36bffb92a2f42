import json

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


def test_humaneval_style_splits_into_expressions_and_expectations():
    plan = plan_asserts(HUMANEVAL_STYLE, "pair")
    assert not plan.whole
    ops = [(t.op, t.expected) for t in plan.tests]
    assert ops == [
        ("eq", (1, 2)),
        ("eq", (4, 5)),
        ("close", 0.25),
        ("is", None),
        ("truthy", None),
        ("falsy", None),
        ("ne", "seven"),
    ]
    assert plan.tests[0].expr == "candidate([1, 2], 3)"


def test_expected_values_never_enter_the_sandbox_job():
    plan = plan_assert_tests("f", "def check(candidate):\n    assert candidate(2) == 'zq-secret-answer'\n")
    assert plan.mode == "exprs"
    assert "zq-secret-answer" not in json.dumps(plan.job) + json.dumps(plan.secret)
    assert plan.expectations[0].expected == "zq-secret-answer"


def test_mbpp_style_top_level_asserts_use_the_function_name():
    plan = plan_asserts("assert remove_occ('hello', 'l') == 'heo'\nassert remove_occ('a', 'a') == ''\n", "remove_occ")
    assert [t.expr for t in plan.tests] == ["candidate('hello', 'l')", "candidate('a', 'a')"]


def test_imports_become_a_preamble():
    plan = plan_asserts("import math\ndef check(candidate):\n    assert candidate(math.pi) == 3\n", "f")
    assert plan.preamble == ("import math",) and plan.tests[0].expr == "candidate(math.pi)"


@pytest.mark.parametrize(
    "code",
    [
        # expected computed by code, loops, helpers: cannot be split
        "def check(candidate):\n    for i in range(3):\n        assert candidate(i) == i + 1\n",
        "def check(candidate):\n    assert candidate(2) == sorted([2, 1])\n",
        "def helper(x):\n    return x\ndef check(candidate):\n    assert candidate(1) == helper(1)\n",
        "def check(candidate):\n    assert candidate(poly([1, 2])) == 0\n",
    ],
)
def test_unsplittable_tests_run_whole_with_numbered_sites(code):
    plan = plan_asserts(code, "f")
    assert plan.whole and len(plan.sites) == 1
    assert "__rft_assert(0, lambda:" in plan.check_code
    assert "assert " not in plan.check_code


def test_whole_mode_knows_the_prompt_helpers_it_must_proxy():
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
