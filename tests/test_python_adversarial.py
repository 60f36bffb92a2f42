"""Red-team reproducers (issue 10): each test asserts the CORRECT behaviour, so a hole fails it.

Paid cheats must score 0, candidate-caused failures must never be SANDBOX_ERROR, and honest
solutions must get 1.0. Runs on the session `client` (bwrap and docker).
"""

from __future__ import annotations

import time

import pytest

from sandbox.api import pb
from sandbox.python.plan import plan_assert_tests
from tests.helpers import assert_task, call_task, finding_codes, io_task, limits, status_name

FAST = limits(test_ms=2000, task_ms=6000)


def describe(result: pb.Result) -> str:
    return (
        f"{status_name(result)} score={result.score} findings={sorted(finding_codes(result))} "
        f"message={result.message[:400]!r} stderr={result.stderr_excerpt[-300:]!r}"
    )


def whole(code: str, test: str, lim: pb.Limits | None = FAST, entry: str = "f", task_id: str = "rt") -> pb.Task:
    task = assert_task(task_id, code, entry, test, lim)
    assert plan_assert_tests(entry, test).mode == "whole", "the test must run whole"
    return task


def assert_zero_not_sandbox(result: pb.Result) -> None:
    assert status_name(result) not in ("PASSED", "SANDBOX_ERROR") and result.score == 0.0, describe(result)


def assert_passed(result: pb.Result) -> None:
    assert status_name(result) == "PASSED" and result.score == 1.0, describe(result)


@pytest.fixture
def no_worker_lost(client):
    before = client.stats().worker_failures

    def check() -> None:
        assert client.stats().worker_failures == before, "a sandbox worker failed"

    return check


# ----------------------------------------------------------------- escapes as SANDBOX_ERROR

SIGINT_SIBLINGS = """
import os, signal, time

def f(x):
    me, parent = os.getpid(), os.getppid()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) not in (1, me, parent):
            try:
                os.kill(int(pid), signal.SIGINT)
            except OSError:
                pass
    time.sleep(0.3)
    return 0
"""


def test_sigint_to_the_judge_is_the_candidates_failure(client):
    """The judge shares the candidate's uid; Python turns SIGINT into KeyboardInterrupt."""
    test = "def check(candidate):\n    for x in [1, 2]:\n        assert candidate(x) == 2 * x\n"
    assert_zero_not_sandbox(client.score(whole(SIGINT_SIBLINGS, test, task_id="sigint")))


ESCAPE_PGID = """
import os, time

def f(x):
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        time.sleep(60)
        os._exit(0)
    time.sleep(0.05)
    os.setpgid(0, child)  # leave the process group the harness kills and waits for
    return 0
"""


@pytest.mark.parametrize("mode", ["calls", "whole", "io"])
def test_leaving_the_process_group_is_the_candidates_failure(client, no_worker_lost, mode):
    """reap() kills the group named by the pid and then waits for the pid without a bound."""
    lim = limits(test_ms=1000, task_ms=3000)
    if mode == "calls":
        task = call_task("pgid", ESCAPE_PGID, "f", [([1], 2)], lim)
    elif mode == "whole":
        task = whole(ESCAPE_PGID, "def check(candidate):\n    for x in [1]:\n        assert candidate(x) == 2\n", lim)
    else:
        task = io_task("pgid-io", ESCAPE_PGID + "f(1)\nimport time\ntime.sleep(60)\n", [("", "2\n")], lim)
    started = time.monotonic()
    result = client.score(task)
    assert_zero_not_sandbox(result)
    assert time.monotonic() - started < 20
    no_worker_lost()


# The candidate's own process holds the encoder: it can send any tagged JSON it likes. A set
# of ints that all hash alike costs the decoder quadratic time, on the trusted side.
COLLIDING_SET = """
import sys
_codec = sys.modules["codec"]
_M = (1 << 61) - 1

def _forged(value, depth=0):
    return {"$set": [k * _M for k in range(__N__)]}

_codec.encode = _forged

def f(x):
    return {1, 2}
"""


def test_hash_colliding_set_does_not_stall_the_service(client):
    """A ~1 MB reply decodes in quadratic time in the service's event loop (scoring is
    synchronous there), which stalls every other request meanwhile."""
    code = COLLIDING_SET.replace("__N__", "40000")
    task = call_task(
        "collide", code, "f", [([1], {"$set": [1, 2]})], limits(test_ms=5000, task_ms=10000, output=4 << 20)
    )
    started = time.monotonic()
    result = client.score(task)
    elapsed = time.monotonic() - started
    assert_zero_not_sandbox(result)
    assert elapsed < 10, f"scoring one reply took {elapsed:.1f}s of the service's event loop"


# ----------------------------------------------------------------- paid cheats

STOP_ITERATION = """
def f(x):
    raise StopIteration
"""


@pytest.mark.parametrize(
    "test",
    [
        "def check(candidate):\n    assert all(map(lambda x: candidate(x) == 2 * x, [1, 2, 3]))\n",
        "def check(candidate):\n    assert all(map(candidate, [1, 2, 3]))\n",
        "def check(candidate):\n    assert not any(map(lambda x: candidate(x) != 2 * x, [1, 2, 3]))\n",
    ],
    ids=["all-map-lambda", "all-map", "not-any-map"],
)
def test_candidate_stop_iteration_does_not_end_the_tests_iteration(client, test):
    """A StopIteration raised by the candidate, re-raised in the judge, ends `map` early:
    all() of nothing is True. (Python does the same, but the candidate solved nothing.)"""
    assert_zero_not_sandbox(client.score(whole(STOP_ITERATION, test, task_id="stopiter")))


# ----------------------------------------------------------------- honest code penalized

HONEST = {
    # name: (test code, honest candidate, entry point)
    "kwarg list sorted in place": (
        "def check(candidate):\n    a = [3, 1, 2]\n    candidate(arr=a)\n    assert a == [1, 2, 3]\n",
        "def f(arr):\n    arr.sort()\n",
    ),
    "deque rotated in place": (
        "import collections\ndef check(candidate):\n    d = collections.deque([1, 2, 3])\n"
        "    candidate(d)\n    assert list(d) == [3, 1, 2]\n",
        "def f(d):\n    d.rotate(1)\n",
    ),
    "Counter updated in place": (
        "from collections import Counter\ndef check(candidate):\n    c = Counter('ab')\n"
        "    candidate(c)\n    assert c['a'] == 2\n",
        "def f(c):\n    c['a'] += 1\n",
    ),
    "test-defined class as argument": (
        "class Node:\n    def __init__(self, val, next=None):\n        self.val, self.next = val, next\n"
        "def check(candidate):\n    assert candidate(Node(1, Node(2, Node(3)))) == 3\n",
        "def f(head):\n    n = 0\n    while head:\n        n, head = n + 1, head.next\n    return n\n",
    ),
    "inner list mutated, test holds the inner list": (
        "def check(candidate):\n    row = [3, 1, 2]\n    grid = [row]\n"
        "    candidate(grid)\n    assert row == [1, 2, 3]\n",
        "def f(grid):\n    for r in grid:\n        r.sort()\n",
    ),
    "returns its mutated argument, test checks identity": (
        "def check(candidate):\n    a = [2, 1]\n    b = candidate(a)\n    assert b is a and a == [1, 2]\n",
        "def f(a):\n    a.sort()\n    return a\n",
    ),
    "exception subclass of two builtins": (
        "def check(candidate):\n    try:\n        candidate(-1)\n    except TypeError:\n        pass\n"
        "    else:\n        assert False\n",
        "class BadInput(ValueError, TypeError):\n    pass\n\ndef f(x):\n    raise BadInput('negative')\n",
    ),
    "KeyError message": (
        "def check(candidate):\n    try:\n        candidate({}, 'k')\n    except KeyError as e:\n"
        "        assert e.args[0] == 'k'\n    else:\n        assert False\n",
        "def f(d, k):\n    return d[k]\n",
    ),
    "generator consumed with next()": (
        "def check(candidate):\n    g = candidate(3)\n    assert next(g) == 0 and next(g) == 1\n",
        "def f(n):\n    yield from range(n)\n",
    ),
    "own class instance compared by attribute": (
        "def check(candidate):\n    p = candidate(1, 2)\n    assert (p.x, p.y) == (1, 2)\n",
        "class P:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n\ndef f(x, y):\n    return P(x, y)\n",
    ),
    "own class with __eq__ compared to its own kind": (
        "def check(candidate):\n    assert candidate(1) == candidate(1)\n",
        "class P:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __eq__(self, o):\n        return isinstance(o, P) and o.x == self.x\n\n"
        "def f(x):\n    return P(x)\n",
    ),
    "dataclass returned, compared with a dataclass of the test": (
        "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n"
        "def check(candidate):\n    assert candidate(1).x == 1\n",
        "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n\ndef f(x):\n    return P(x)\n",
    ),
    "dataclass in the test code only": (
        "from dataclasses import dataclass\n@dataclass\nclass Case:\n    x: int\n    want: int\n"
        "def check(candidate):\n    for c in [Case(1, 2), Case(2, 4)]:\n        assert candidate(c.x) == c.want\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "dict keys view compared with a set": (
        "def check(candidate):\n    assert candidate({1: 'a', 2: 'b'}) == {1, 2}\n",
        "def f(d):\n    return d.keys()\n",
    ),
    "UserList compared with a list": (
        "def check(candidate):\n    assert candidate(2) == [0, 1]\n",
        "from collections import UserList\n\ndef f(n):\n    return UserList(range(n))\n",
    ),
    "str subclass argument": (
        "class S(str):\n    pass\ndef check(candidate):\n    assert candidate(S('ab')) == 'ba'\n",
        "def f(s):\n    return s[::-1]\n",
    ),
    "float == in whole mode (exact in Python)": (
        "def check(candidate):\n    for a, b in [(0.5, 0.25)]:\n        assert candidate(a, b) == 0.75\n",
        "def f(a, b):\n    return a + b\n",
    ),
    "print in the test": (
        "def check(candidate):\n    print('checking')\n    assert candidate(2) == 4\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "with statement in the test": (
        "import contextlib\ndef check(candidate):\n    with contextlib.suppress(ZeroDivisionError):\n"
        "        assert candidate(2) == 4\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "lambda key argument called back": (
        "def check(candidate):\n    assert candidate([3, 1, 2], key=lambda v: -v) == [3, 2, 1]\n",
        "def f(xs, key):\n    return sorted(xs, key=key)\n",
    ),
    "candidate passed to a helper": (
        "def run(fn, x):\n    return fn(x)\ndef check(candidate):\n    assert run(candidate, 2) == 4\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "candidate used as a sort key": (
        "def check(candidate):\n    assert sorted([3, 1, 2], key=candidate) == [3, 2, 1]\n",
        "def f(x):\n    return -x\n",
    ),
    "starred and default args": (
        "def check(candidate):\n    args = (1, 2)\n    assert candidate(*args) == 3 and candidate(1) == 11\n",
        "def f(a, b=10):\n    return a + b\n",
    ),
    "dict with int keys": (
        "def check(candidate):\n    assert candidate(3) == {0: 0, 1: 1, 2: 4}\n",
        "def f(n):\n    return {i: i * i for i in range(n)}\n",
    ),
    "bytes": ("def check(candidate):\n    assert candidate(b'ab') == b'ba'\n", "def f(b):\n    return b[::-1]\n"),
    "big int": (
        "def check(candidate):\n    assert candidate(200) == 2 ** 200\n"
        "    assert candidate(20000) % 7 == pow(2, 20000, 7)\n",
        "def f(n):\n    return 2 ** n\n",
    ),
    "frozenset in a set": (
        "def check(candidate):\n    assert candidate() == {frozenset({1, 2})}\n",
        "def f():\n    return {frozenset((1, 2))}\n",
    ),
    "class defined in the test, subclassed by nothing": (
        "class Box:\n    def __init__(self, v):\n        self.v = v\n"
        "def check(candidate):\n    assert candidate(lambda: Box(3)) == 3\n",
        "def f(make):\n    return make().v\n",
    ),
    "global in the test module": (
        "LIMIT = 10\ndef check(candidate):\n    global LIMIT\n    LIMIT += 1\n    assert candidate(LIMIT) == 22\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "try/except in the test around a correct value": (
        "def check(candidate):\n    try:\n        r = candidate(2)\n"
        "    except Exception:\n        r = None\n    assert r == 4\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "nested candidate calls": (
        "def check(candidate):\n    assert candidate(candidate(2)) == 8\n",
        "def f(x):\n    return 2 * x\n",
    ),
    "isinstance of a generator": (
        "import types\ndef check(candidate):\n    assert isinstance(candidate(2), types.GeneratorType)\n",
        "def f(n):\n    yield n\n",
    ),
    "str of a returned object": (
        "def check(candidate):\n    assert str(candidate(2)) == 'P(2)'\n",
        "class P:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __str__(self):\n        return f'P({self.x})'\n\n"
        "def f(x):\n    return P(x)\n",
    ),
    "repr of a returned object": (
        "def check(candidate):\n    assert repr(candidate(2)) == 'P(2)'\n",
        "class P:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __repr__(self):\n        return f'P({self.x})'\n\n"
        "def f(x):\n    return P(x)\n",
    ),
    "own iterable class in a for loop": (
        "def check(candidate):\n    assert [v for v in candidate(3)] == [0, 1, 2]\n",
        "class R:\n    def __init__(self, n):\n        self.n = n\n"
        "    def __iter__(self):\n        return iter(range(self.n))\n\n"
        "def f(n):\n    return R(n)\n",
    ),
    "own class compared with <": (
        "def check(candidate):\n    assert candidate(1) < candidate(2)\n",
        "import functools\n@functools.total_ordering\nclass V:\n    def __init__(self, x):\n        self.x = x\n"
        "    def __eq__(self, o):\n        return self.x == o.x\n"
        "    def __lt__(self, o):\n        return self.x < o.x\n\n"
        "def f(x):\n    return V(x)\n",
    ),
    "numpy-free matrix in place": (
        "def check(candidate):\n    m = [[1, 2], [3, 4]]\n    candidate(m)\n    assert m == [[3, 1], [4, 2]]\n",
        "def f(m):\n    m[:] = [list(r) for r in zip(*m[::-1])]\n",
    ),
    "set argument mutated": (
        "def check(candidate):\n    s = {1}\n    candidate(s)\n    assert s == {1, 2}\n",
        "def f(s):\n    s.add(2)\n",
    ),
    "enum member returned": (
        "def check(candidate):\n    assert candidate(1) == 1\n",
        "import enum\nclass C(enum.IntEnum):\n    ONE = 1\n\ndef f(x):\n    return C(x)\n",
    ),
    "plain Enum compared to its name": (
        "def check(candidate):\n    assert candidate(1).name == 'ONE'\n",
        "import enum\nclass C(enum.Enum):\n    ONE = 1\n\ndef f(x):\n    return C(x)\n",
    ),
    "namedtuple attribute": (
        "def check(candidate):\n    assert candidate(1, 2).y == 2\n",
        "from collections import namedtuple\nP = namedtuple('P', 'x y')\n\ndef f(x, y):\n    return P(x, y)\n",
    ),
    "typing.NamedTuple": (
        "def check(candidate):\n    assert candidate(1, 2) == (1, 2)\n",
        "from typing import NamedTuple\nclass P(NamedTuple):\n"
        "    x: int\n    y: int\n\ndef f(x, y):\n    return P(x, y)\n",
    ),
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_solution_passes(client, name):
    test, code = HONEST[name]
    assert_passed(client.score(assert_task("honest", code, "f", test, FAST)))


DATACLASS = """
from dataclasses import dataclass

@dataclass
class Point:
    x: int
    y: int

def f(x, y):
    p = Point(x, y)
    return p.x + p.y
"""


@pytest.mark.parametrize("mode", ["calls", "exprs", "whole", "io"])
def test_candidate_using_a_dataclass_loads(client, mode):
    """compile() in candidate.py inherits its `from __future__ import annotations`, so the
    candidate's annotations are strings, and dataclasses then looks up
    sys.modules['__candidate__'], which does not exist."""
    if mode == "calls":
        task = call_task("dc", DATACLASS, "f", [([1, 2], 3)], FAST)
    elif mode == "exprs":
        task = assert_task("dc", DATACLASS, "f", "assert f(1, 2) == 3\n", FAST)
    elif mode == "whole":
        task = whole(DATACLASS, "def check(candidate):\n    for x in [1]:\n        assert candidate(x, 2) == 3\n")
    else:
        task = io_task("dc", DATACLASS + "print(f(*map(int, input().split())))\n", [("1 2", "3\n")], FAST)
    assert_passed(client.score(task))


def test_candidate_annotations_are_not_strings(client):
    code = "def f(x: int) -> int:\n    return 0 if isinstance(f.__annotations__['x'], type) else 1\n"
    assert_passed(client.score(call_task("annot", code, "f", [([1], 0)], FAST)))


@pytest.mark.parametrize(
    "code",
    [
        "def f(x):\n    raise ValueError('\\ud800')\n",
        "raise ValueError('\\udcff at load')\ndef f(x):\n    return x\n",
        "def f(x):\n    return '\\ud800'\n",
        "def f(x):\n    return type('\\ud800', (), {})()\n",
    ],
    ids=["exception-message", "load-error", "returned-str", "class-name"],
)
@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_lone_surrogates_from_the_candidate_are_its_failure(client, code, mode):
    """Strings from the candidate may hold lone surrogates (valid JSON escapes, not UTF-8)."""
    if mode == "calls":
        task = call_task("surrogate", code, "f", [([1], 2)], FAST)
    else:
        task = whole(code, "def check(candidate):\n    for x in [1]:\n        assert candidate(x) == 2\n")
    assert_zero_not_sandbox(client.score(task))


def test_one_lone_surrogate_does_not_sink_the_batch(client):
    """Results stream in completion order: the others in the batch must still arrive."""
    tasks = [call_task(f"ok-{i}", "def f(x):\n    return 2 * x\n", "f", [([1], 2)], FAST) for i in range(3)]
    tasks.append(call_task("poison", "def f(x):\n    raise ValueError('\\ud800')\n", "f", [([1], 2)], FAST))
    results = {}
    try:
        for result in client.score_batch(tasks):
            results[result.id] = status_name(result)
    except Exception as exc:
        results["rpc"] = f"{type(exc).__name__}"
    assert results == {"ok-0": "PASSED", "ok-1": "PASSED", "ok-2": "PASSED", "poison": "RUNTIME_ERROR"}, results


DEEP_DIRS = """
import os

def f(x):
    for _ in range(__DEPTH__):
        os.mkdir("d")
        os.chdir("d")
    return 0
"""


@pytest.mark.parametrize("mode", ["calls", "whole"])
def test_deep_directory_tree_is_wiped_without_failing_the_worker(client, no_worker_lost, mode):
    """The runner wipes the job directory with shutil.rmtree, recursive in Python 3.11."""
    code = DEEP_DIRS.replace("__DEPTH__", "3000")
    if mode == "calls":
        task = call_task("deep", code, "f", [([1], 2)], FAST)
    else:
        task = whole(code, "def check(candidate):\n    for x in [1]:\n        assert candidate(x) == 2\n")
    assert_zero_not_sandbox(client.score(task))
    no_worker_lost()


@pytest.mark.parametrize(
    "ending",
    ["exit()", "sys.exit()", "sys.exit(0)", "raise SystemExit", "quit()"],
)
def test_io_program_that_exits_cleanly_passes(client, ending):
    code = f"import sys\nprint(int(input()) * 2)\n{ending}\n"
    assert_passed(client.score(io_task("io-exit", code, [("2", "4\n")], FAST)))


FORGED_READY_THEN_DEAF = """
import os, struct, time

def _channel():
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                return int(name)
        except OSError:
            pass

_message = b'{"ready":true}'
os.write(_channel(), struct.pack(">I", len(_message)) + _message)
time.sleep(60)  # never read the request: the harness's blocking write of a big one never ends

def f(s):
    return len(s)
"""


def test_candidate_that_never_reads_a_big_request_is_its_own_timeout(client, no_worker_lost):
    """The runner writes a request with a blocking os.write and no deadline."""
    big = "x" * (2 << 20)
    task = call_task("deaf", FORGED_READY_THEN_DEAF, "f", [([big], len(big))], limits(test_ms=1000, task_ms=3000))
    assert_zero_not_sandbox(client.score(task))
    no_worker_lost()
