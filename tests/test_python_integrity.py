"""Python rewards that cannot be gamed and never punish honest code (issue 10), on real sandboxes.

Every class of paid cheat gets a cheating candidate that must score 0, next to an honest
candidate of the same shape that must pass. The cheats avoid the static checks on purpose
(an ``__eq__`` assigned as a lambda, a builtin patched through an alias), so what is tested
is the boundary itself: no test expression and no expected value runs or sits where the
candidate's code runs. Runs on every isolation backend (the session `client` fixture).
"""

from __future__ import annotations

import pytest

from sandbox.api import pb
from sandbox.python.plan import plan_assert_tests
from tests.helpers import MiB, assert_task, call_task, finding_codes, io_task, limits, status_name

FAST = limits(test_ms=2000, task_ms=8000)

# An object that equals everything, written so that no static check can see it.
ALWAYS_EQUAL = """
class _Anything:
    __eq__ = lambda self, other: not False
    __ne__ = lambda self, other: not True
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    __bool__ = lambda self: not False
    __contains__ = lambda self, item: not False
    __hash__ = object.__hash__
    def __sub__(self, other): return 0
    __rsub__ = __sub__
    __abs__ = lambda self: 0
    __iter__ = lambda self: iter(())
    __len__ = lambda self: 0
    __float__ = lambda self: 3.5
    __index__ = lambda self: 0
"""

# Patches what the test expression would call, through aliases the static checks do not know.
PATCHED = """
import builtins as _b, math as _m, operator as _o
_b.all = _b.any = lambda *a, **k: True
_b.sorted = lambda *a, **k: [2, 4]
_b.abs = lambda *a, **k: 0
_b.isinstance = lambda *a, **k: True
_m.isclose = lambda *a, **k: True
_m.fabs = lambda *a, **k: 0.0
_o.eq = lambda *a: True
"""

# Hunts the caller's frames and the heap for the expected literals and returns the first found.
HUNTER = """
import gc, sys
def _hunt():
    found = []
    frame = sys._getframe(1)
    while frame is not None:
        found += [c for c in frame.f_code.co_consts if isinstance(c, str) and c.startswith("zq-")]
        found += [v for v in frame.f_locals.values() if isinstance(v, str) and v.startswith("zq-")]
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, str) and obj.startswith("zq-") and obj != "zq-":
            found.append(obj)
    return found[0] if found else "nothing"
"""

SHAPES = {
    # name: (test code, honest candidate)
    "boolean and": ("assert candidate(1) == 2 and candidate(2) == 4", "def f(x):\n    return 2 * x\n"),
    "boolean or": ("assert candidate(1) == 2 or candidate(1) == -2", "def f(x):\n    return 2 * x\n"),
    "all()": ("assert all(candidate(x) == 2 * x for x in [1, 2, 3])", "def f(x):\n    return 2 * x\n"),
    "any()": ("assert any([candidate(1) == 2, candidate(2) == 5])", "def f(x):\n    return 2 * x\n"),
    "isclose": ("assert math.isclose(candidate(1.75), 3.5)", "def f(x):\n    return 2 * x\n"),
    "isclose kwargs": ("assert math.isclose(candidate(1), 2.0, rel_tol=1e-9)", "def f(x):\n    return 2.0 * x\n"),
    "abs difference": ("assert abs(candidate(1.75) - 3.5) < 1e-6", "def f(x):\n    return 2 * x\n"),
    "fabs difference": ("assert math.fabs(candidate(1.75) - 3.5) < 1e-6", "def f(x):\n    return 2 * x\n"),
    "in": ("assert candidate(2) in [4, 5]", "def f(x):\n    return 2 * x\n"),
    "in result": ("assert 4 in candidate(2)", "def f(x):\n    return [2 * x]\n"),
    "sorted ==": ("assert sorted(candidate([4, 2])) == [2, 4]", "def f(x):\n    return x[::-1]\n"),
    "set ==": ("assert set(candidate([4, 2])) == {2, 4}", "def f(x):\n    return x\n"),
    "tuple ==": ("assert tuple(candidate([4, 2])) == tuple([4, 2])", "def f(x):\n    return x\n"),
    "len ==": ("assert len(candidate([4, 2])) == 2", "def f(x):\n    return x\n"),
    "nested in a call": ("assert bool(candidate(2) == 4)", "def f(x):\n    return 2 * x\n"),
    "not !=": ("assert not candidate(2) != 4", "def f(x):\n    return 2 * x\n"),
    "is True": ("assert candidate(2) is True", "def f(x):\n    return x == 2\n"),
    "isinstance": ("assert isinstance(candidate(2), int) and candidate(2) == 4", "def f(x):\n    return 2 * x\n"),
    "chained": ("assert 3 < candidate(2) < 5", "def f(x):\n    return 2 * x\n"),
    "method": ("assert candidate('AB').lower() == 'ab'", "def f(x):\n    return x\n"),
    "index": ("assert candidate([7, 8])[1] == 8", "def f(x):\n    return x\n"),
    "loop (whole mode)": ("for x in [1, 2]:\n        assert candidate(x) == 2 * x", "def f(x):\n    return 2 * x\n"),
    "helper (whole mode)": (
        "def twice(v):\n        return 2 * v\n    assert candidate(3) == twice(3)",
        "def f(x):\n    return 2 * x\n",
    ),
}


def shape_task(task_id: str, code: str, test: str) -> pb.Task:
    tests = f"import math\n\ndef check(candidate):\n    {test}\n"
    return assert_task(task_id, code, "f", tests, FAST)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_honest_candidate_passes_every_shape(client, shape):
    test, honest = SHAPES[shape]
    result = client.score(shape_task(f"honest-{shape}", honest, test))
    assert status_name(result) == "PASSED" and result.score == 1.0, result.message


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    "cheat",
    [
        ALWAYS_EQUAL + "def f(x):\n    return _Anything()\n",
        ALWAYS_EQUAL + "def f(x):\n    return [_Anything(), _Anything()]\n",
        PATCHED + "def f(x):\n    return 0\n",
    ],
    ids=["always-equal", "always-equal-inside", "patched-builtins"],
)
def test_cheats_score_zero_in_every_shape(client, shape, cheat):
    test, _ = SHAPES[shape]
    result = client.score(shape_task(f"cheat-{shape}", cheat, test))
    assert result.score == 0.0 and status_name(result) not in ("PASSED", "SANDBOX_ERROR"), result.message


@pytest.mark.parametrize(
    "test",
    [
        "assert candidate(1) == 'zq-expected-1'",
        "assert candidate(1) == 'zq-expected-1' and candidate(2) == 'zq-expected-2'",
        "assert candidate(1) in ['zq-expected-1']",
        "for x in [1]:\n        assert candidate(x) == 'zq-expected-1'",
    ],
    ids=["split", "boolean", "in", "whole"],
)
def test_expected_literals_are_nowhere_the_candidate_can_read(client, test):
    code = HUNTER + "def f(x):\n    return _hunt()\n"
    result = client.score(shape_task("hunter", code, test))
    assert result.score == 0.0, result.message
    assert "zq-expected" not in "".join(t.message for t in result.tests)


def test_split_asserts_send_only_calls_to_the_sandbox():
    tests = "import math\ndef check(candidate):\n"
    tests += "    assert math.isclose(candidate(2), 3.5) and candidate(3) == 'zq-secret'\n"
    plan = plan_assert_tests("f", tests)
    assert plan.mode == "exprs"
    assert plan.job["requests"] == [{"call": [[2], {"$dict": []}]}, {"call": [[3], {"$dict": []}]}]
    assert "zq-secret" not in repr(plan.job) and "3.5" not in repr(plan.job)


# --------------------------------------------------------------------------- helpers


POLY_PROMPT = '''import math

def poly(xs: list, x: float):
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))

def find_zero(xs: list):
    """Return x such that poly(xs, x) == 0."""
'''
POLY_TEST = """
def check(candidate):
    for xs in ([-2, 1], [-4, 2], [1, 1]):
        solution = candidate(xs)
        assert math.fabs(poly(xs, solution)) < 1e-4
"""


def poly_task(task_id: str, completion: str, setup: str = POLY_PROMPT) -> pb.Task:
    task = assert_task(task_id, POLY_PROMPT + completion, "find_zero", "import math\n" + POLY_TEST, FAST)
    task.python.setup_code = setup
    return task


def test_helpers_come_from_the_setup_code_not_the_candidate(client):
    honest = "    return -xs[0] / xs[1]\n"
    assert status_name(client.score(poly_task("poly-honest", honest))) == "PASSED"
    # redefines the helper the test uses so that every answer is a root
    cheat = "    return 0.0\n\ndef poly(xs, x):\n    return 0\n"
    result = client.score(poly_task("poly-cheat", cheat))
    assert status_name(result) == "FAILED" and result.score == 0.0, result.message


def test_a_test_that_needs_helpers_without_setup_code_is_invalid(client):
    import grpc

    with pytest.raises(grpc.RpcError) as error:
        client.score(poly_task("poly-nosetup", "    return 1.0\n", setup=""))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "poly" in error.value.details() and "setup_code" in error.value.details()


def test_broken_setup_code_is_not_the_candidates_fault(client):
    broken = POLY_PROMPT + "raise RuntimeError()\n"
    result = client.score(poly_task("poly-broken-setup", "    return 1.0\n", setup=broken))
    assert status_name(result) == "SANDBOX_ERROR" and "setup_code" in result.message


# --------------------------------------------------------------------------- semantics


@pytest.mark.parametrize(
    "returned, passes",
    [("5", True), ("5.0", True), ("5.0000001", False), ("5.000000000001", False), ("True", False)],
)
@pytest.mark.parametrize("form", ["split", "call test", "whole"])
def test_int_expected_values_compare_exactly(client, returned, passes, form):
    code = f"def f(n):\n    return {returned}\n"
    if form == "call test":
        task = call_task("exact", code, "f", [([5], 5)], FAST)
    elif form == "split":
        task = assert_task("exact", code, "f", "def check(candidate):\n    assert candidate(5) == 5\n", FAST)
    else:
        task = shape_task("exact", code, "for n in [5]:\n        assert candidate(n) == 5")
    result = client.score(task)
    # `True == 5` is False in Python; 5.0 == 5 is True
    assert (status_name(result) == "PASSED") is passes, result.message


def test_float_expected_values_keep_a_tolerance(client):
    code = "def f(n):\n    return 0.1 + 0.2\n"
    result = client.score(assert_task("float", code, "f", "def check(candidate):\n    assert candidate(1) == 0.3\n"))
    assert status_name(result) == "PASSED", result.message


# --------------------------------------------------------------------------- crashes


EXPECTS_ERROR = [
    "try:\n        candidate(-1)\n        assert False\n    except ValueError:\n        pass",
    "try:\n        candidate(-1)\n        assert False\n    except Exception:\n        pass",
    "try:\n        candidate(-1)\n        assert False\n    except:\n        pass",
    "try:\n        candidate(-1)\n        assert False\n    except BaseException:\n        pass",
]
CRASHES = {
    "exits": "import os\ndef f(x):\n    os._exit(3)\n",
    "kills itself": "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
    "sys.exit": "import sys\ndef f(x):\n    sys.exit(1)\n",
    "memory": "def f(x):\n    return bytearray(8 << 30)\n",
    "times out": "def f(x):\n    while True:\n        pass\n",
    "recursion crash": "import sys\nsys.setrecursionlimit(10**6)\ndef f(x):\n    return f(x + 1)\n",
    "recursion limit": "def f(x):\n    return f(x + 1)\n",
}


@pytest.mark.parametrize("expects", range(len(EXPECTS_ERROR)))
def test_raising_the_expected_error_passes(client, expects):
    code = "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    tests = f"def check(candidate):\n    {EXPECTS_ERROR[expects]}\n    assert candidate(2) == 2\n"
    result = client.score(assert_task("raises", code, "f", tests, FAST))
    assert status_name(result) == "PASSED", result.message


def test_a_subclass_of_the_expected_error_passes(client):
    code = "class Negative(ValueError):\n    pass\ndef f(x):\n    raise Negative('no')\n"
    tests = "def check(candidate):\n    " + EXPECTS_ERROR[0] + "\n    assert True\n"
    result = client.score(assert_task("raises-sub", code, "f", tests, FAST))
    assert status_name(result) == "PASSED", result.message


@pytest.mark.parametrize("crash", sorted(CRASHES))
@pytest.mark.parametrize("expects", range(len(EXPECTS_ERROR)))
def test_crashing_is_not_raising(client, crash, expects):
    tests = f"def check(candidate):\n    {EXPECTS_ERROR[expects]}\n"
    lim = limits(test_ms=1500, task_ms=6000, memory=256 * MiB)
    result = client.score(assert_task("crash", CRASHES[crash], "f", tests, lim))
    assert result.score == 0.0 and status_name(result) not in ("PASSED", "SANDBOX_ERROR"), result.message


# --------------------------------------------------------------------------- honest idioms


HONEST_WHOLE = {
    "mutates its argument": (
        "def f(xs):\n    xs.sort()\n",
        "xs = [3, 1, 2]\n    candidate(xs)\n    assert xs == [1, 2, 3]",
    ),
    "mutates a dict": (
        "def f(d):\n    d['k'] = 1\n",
        "d = {}\n    candidate(d)\n    assert d == {'k': 1}",
    ),
    "returns a generator": (
        "def f(n):\n    for i in range(n):\n        yield i * i\n",
        "assert list(candidate(4)) == [0, 1, 4, 9]\n    assert sum(candidate(3)) == 5",
    ),
    "returns its own class": (
        "class Stack:\n    def __init__(self):\n        self.items = []\n"
        "    def push(self, x):\n        self.items.append(x)\n    def pop(self):\n        return self.items.pop()\n"
        "    def __len__(self):\n        return len(self.items)\n"
        "def f():\n    return Stack()\n",
        "s = candidate()\n    s.push(1)\n    s.push(2)\n    assert len(s) == 2\n    assert s.pop() == 2\n"
        "    assert s.items == [1]",
    ),
    "takes a lambda": (
        "def f(xs, key):\n    return sorted(xs, key=key)\n",
        "assert candidate([3, -4, 1], lambda v: abs(v)) == [1, 3, -4]\n"
        "    assert candidate(['bb', 'a'], len) == ['a', 'bb']",
    ),
    "expected to raise ValueError": (
        "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x\n",
        "try:\n        candidate(-1)\n    except ValueError:\n        ok = True\n"
        "    else:\n        ok = False\n    assert ok",
    ),
    "returns a huge integer": (
        "def f(n):\n    return 7 ** n\n",
        "for n in [6000]:\n        assert candidate(n) == 7 ** n",
    ),
}


@pytest.mark.parametrize("idiom", sorted(HONEST_WHOLE))
def test_honest_idioms_pass(client, idiom):
    code, test = HONEST_WHOLE[idiom]
    task = assert_task("idiom", code, "f", f"def check(candidate):\n    {test}\n", FAST)
    result = client.score(task)
    assert status_name(result) == "PASSED" and result.score == 1.0, result.message
    assert not finding_codes(result) & {"always_equal_object", "harness_killed"}


def test_split_asserts_on_values_that_are_not_data_run_whole():
    """`list(candidate(4))` splits, but a generator is not data: the same tests then run whole."""
    plan = plan_assert_tests("f", f"def check(candidate):\n    {HONEST_WHOLE['returns a generator'][1]}\n")
    assert plan.mode == "exprs" and plan.fallback is not None and plan.fallback.mode == "whole"


def test_wrong_mutation_still_fails(client):
    task = assert_task(
        "mutation-wrong", "def f(xs):\n    xs.reverse()\n", "f",
        "def check(candidate):\n    xs = [3, 1, 2]\n    candidate(xs)\n    assert xs == [1, 2, 3]\n", FAST,
    )  # fmt: skip
    assert status_name(client.score(task)) == "FAILED"


def test_own_class_compared_with_equality_gains_nothing(client):
    code = ALWAYS_EQUAL + "def f():\n    return _Anything()\n"
    result = client.score(shape_task("remote-eq", code, "s = candidate()\n    assert s == 4"))
    assert result.score == 0.0 and "always_equal_object" in finding_codes(result), result.message


def test_an_always_equal_object_is_one_run_time_finding_however_many_tests_meet_it(client):
    # the evidence names the object's class, not its address: a new object per call is still
    # one finding (the audit trail's counts do not depend on where the allocator put it)
    code = "class Always:\n    def __eq__(self, other):\n        return True\n\ndef f(x):\n    return Always()\n"
    for n in range(8):
        result = client.score(call_task(f"eq-{n}", f"{code}# {n}\n", "f", [([1], 2), ([5], 6), ([7], 8)]))
        run_time = [f for f in result.findings if f.code == "always_equal_object" and "returned" in f.message]
        assert status_name(result) == "REJECTED" and len(run_time) == 1, [f.evidence for f in result.findings]
        assert " at 0x" not in run_time[0].evidence, run_time[0].evidence


def test_a_test_that_shadows_a_builtin_gives_the_candidate_its_value(client):
    code = "def f(s):\n    return s[::-1]\n"
    tests = "def check(candidate):\n    input = 'hello'\n    assert candidate(input) == 'olleh'\n"
    assert plan_assert_tests("f", tests).mode == "exprs"
    result = client.score(assert_task("shadow", code, "f", tests, FAST))
    assert status_name(result) == "PASSED", result.message


def test_a_big_expected_output_is_not_cut_by_the_default_output_limit(client):
    expected = "x" * (3 * MiB) + "\n"  # the default output limit is 1 MiB
    code = "import sys\nsys.stdout.write('x' * (3 << 20) + '\\n')\n"
    result = client.score(io_task("big-out", code, [("", expected)]))
    assert status_name(result) == "PASSED", result.message
    loud = client.score(io_task("too-loud", "print('y' * (12 << 20))\n", [("", "short\n")]))
    assert status_name(loud) == "OUTPUT_LIMIT"


# --------------------------------------------------------------------------- escapes as SANDBOX_ERROR

INJECT = """
import os, stat, struct
def _inject(body):
    for fd in range(3, 64):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, struct.pack(">I", len(body)) + body)
        except OSError:
            pass
"""
FORGED_FRAMES = {
    "non-finite float": b'{"ok": 1e999}',
    "non-finite float in an exception": b'{"exc": {"type": "ValueError", "msg": 1e999}}',
    "deep nesting": b'{"ok": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "a forged pass report": b'{"t": "site", "site": 0, "runs": 1, "fails": 0}',
    "huge integer": b'{"ok": 1' + b"0" * 5000 + b"}",
}


@pytest.mark.parametrize("frame", sorted(FORGED_FRAMES))
@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_forged_reply_frames_are_the_candidates_failure(client, frame, mode):
    failures = client.stats().worker_failures
    code = INJECT + f"def f(x):\n    _inject({FORGED_FRAMES[frame]!r})\n    return x\n"
    if mode == "calls":
        task = call_task("forged", code, "f", [([1], 1), ([2], 2)], FAST)
    else:
        task = shape_task("forged", code, "for x in [1, 2]:\n        assert candidate(x) == x")
    result = client.score(task)
    assert status_name(result) != "SANDBOX_ERROR" and result.score < 1.0, result.message
    assert client.stats().worker_failures == failures


def test_many_large_replies_are_an_output_limit_not_a_sandbox_error(client):
    failures = client.stats().worker_failures
    code = "def f(i):\n    return 'x' * 1_900_000\n"  # each reply near the channel's frame cap
    task = call_task("large-replies", code, "f", [([i], "y") for i in range(40)], limits(task_ms=60000))
    result = client.score(task)
    assert status_name(result) == "OUTPUT_LIMIT" and result.score == 0.0, result.message
    assert client.stats().worker_failures == failures


def test_an_object_that_claims_to_contain_everything_gains_nothing(client):
    code = "class Bag:\n    __contains__ = lambda self, item: not False\ndef f(x):\n    return Bag()\n"
    for test in ("assert 4 in candidate(2)", "for x in [2]:\n        assert 4 in candidate(x)"):
        result = client.score(shape_task("contains-all", code, test))
        assert result.score == 0.0 and status_name(result) not in ("PASSED", "SANDBOX_ERROR"), result.message
    honest = "class Bag:\n    def __init__(self, x):\n        self.items = [2 * x]\n"
    honest += "    def __iter__(self):\n        return iter(self.items)\ndef f(x):\n    return Bag(x)\n"
    result = client.score(shape_task("contains-honest", honest, "assert 4 in candidate(2) and 5 not in candidate(2)"))
    assert status_name(result) == "PASSED", result.message
