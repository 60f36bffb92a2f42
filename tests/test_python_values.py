"""Standard-library value types cross the sandbox boundary as values, end to end.

An honest candidate that returns a Counter, a namedtuple, a Fraction, a date or an
integer too long for ``str()`` must be scored like one that returns a list: PASSED
when Python's ``==`` says the answer is right, FAILED when it is wrong, and never
REJECTED as an always-equal cheat. Classes the candidate writes with their own
``__eq__`` are still rejected, also when they subclass one of those types.
"""

from __future__ import annotations

import pytest

from tests.helpers import assert_task, call_task, finding_codes, limits, status_name

LIM = limits(test_ms=3000, task_ms=10000)
BIG = 3**20000  # 9543 digits: beyond Python's 4300-digit int/str conversion limit

IMPORTS = (
    "import datetime, decimal, enum, fractions, typing\n"
    "from collections import Counter, OrderedDict, defaultdict, deque, namedtuple\n"
)

# name: (body of f, expected as tagged JSON, a wrong expectation for the same answer)
HONEST = {
    "Counter": ("return Counter('abca')", {"$Counter": [["a", 2], ["b", 1], ["c", 1]]}, {"$Counter": [["a", 2]]}),
    "Counter-vs-dict": ("return Counter('abca')", {"a": 2, "b": 1, "c": 1}, {"a": 2, "b": 1, "c": 2}),
    "Counter-zero-count": (
        "c = Counter('ab')\n    c['z'] = 0\n    return c",
        {"$Counter": [["a", 1], ["b", 1]]},  # Python 3.10+: missing counts are zero
        {"$Counter": [["a", 1], ["b", 1], ["z", 1]]},
    ),
    "OrderedDict": (
        "return OrderedDict([('b', 1), ('a', 2)])",
        {"$OrderedDict": [["b", 1], ["a", 2]]},
        {"$OrderedDict": [["a", 2], ["b", 1]]},  # OrderedDict == OrderedDict is order-sensitive
    ),
    "OrderedDict-vs-dict": ("return OrderedDict([('b', 1), ('a', 2)])", {"a": 2, "b": 1}, {"a": 2}),
    "defaultdict": (
        "d = defaultdict(list)\n    for w in ['a', 'bb', 'c']:\n        d[len(w)].append(w)\n    return d",
        {"$dict": [[1, ["a", "c"]], [2, ["bb"]]]},
        {"$dict": [[1, ["a"]], [2, ["bb"]]]},
    ),
    "namedtuple": (
        "P = namedtuple('P', 'x y')\n    return P(1, 2.5)",
        {"$namedtuple": {"name": "P", "fields": ["x", "y"], "values": [1, 2.5]}},
        {"$namedtuple": {"name": "P", "fields": ["x", "y"], "values": [2, 1]}},
    ),
    "namedtuple-vs-tuple": ("return divmod_t(7, 2)", {"$tuple": [3, 1]}, {"$tuple": [3, 2]}),
    "NamedTuple-subclass": ("return Pixel(3, 4)", {"$tuple": [3, 4]}, [3, 4]),  # a tuple never equals a list
    "deque": (
        "return deque([1, 2, 3], maxlen=5)",
        {"$deque": {"items": [1, 2, 3], "maxlen": 5}},
        [1, 2, 3],  # Python: a deque never equals a list
    ),
    "Fraction": (
        "return fractions.Fraction(1, 3) + fractions.Fraction(1, 6)",
        {"$Fraction": [1, 2]},
        {"$Fraction": [1, 3]},
    ),
    "Fraction-vs-float": ("return fractions.Fraction(1, 2)", 0.5, 0.25),
    "Decimal": ("return decimal.Decimal('1.10')", {"$Decimal": "1.1"}, {"$Decimal": "1.11"}),
    "date": ("return datetime.date(2024, 2, 29)", {"$date": [2024, 2, 29]}, {"$date": [2024, 3, 1]}),
    "datetime-aware": (
        "tz = datetime.timezone(datetime.timedelta(hours=2))\n    return datetime.datetime(2024, 1, 1, 12, tzinfo=tz)",
        {"$datetime": [2024, 1, 1, 10, 0, 0, 0, {"$timezone": [[0, 0, 0], None]}, 0]},  # the same instant in UTC
        {"$datetime": [2024, 1, 1, 12, 0, 0, 0, {"$timezone": [[0, 0, 0], None]}, 0]},
    ),
    "timedelta": ("return datetime.timedelta(days=1, seconds=5)", {"$timedelta": [1, 5, 0]}, {"$timedelta": [1, 6, 0]}),
    "time": ("return datetime.time(23, 59, 1)", {"$time": [23, 59, 1, 0, None, 0]}, {"$time": [23, 59, 2, 0, None, 0]}),
    "range": ("return range(0, 10, 2)", {"$range": [0, 10, 2]}, {"$range": [0, 10, 3]}),
    "big-int": ("return 3 ** 20000", {"$int": format(BIG, "x")}, {"$int": format(BIG + 1, "x")}),
    "big-int-in-list": (
        "return [3 ** 20000, -(3 ** 20000)]",
        [{"$int": format(BIG, "x")}, {"$int": "-" + format(BIG, "x")}],
        [1, 2],
    ),
    "IntEnum": ("return Color.RED", 1, 2),
    "str-Enum": ("return Mood.HAPPY", "happy", "sad"),
}
HELPERS = (
    "class Pixel(typing.NamedTuple):\n    x: int\n    y: int\n"
    "DivMod = namedtuple('DivMod', ['q', 'r'])\n"
    "def divmod_t(a, b):\n    return DivMod(*divmod(a, b))\n"
    "class Color(enum.IntEnum):\n    RED = 1\n"
    "class Mood(str, enum.Enum):\n    HAPPY = 'happy'\n"
)


def candidate(body: str) -> str:
    return IMPORTS + HELPERS + f"def f():\n    {body}\n"


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_standard_library_value_passes(client, name):
    body, expected, _ = HONEST[name]
    result = client.score(call_task(f"value-{name}", candidate(body), "f", [([], expected)], LIM))
    assert (status_name(result), result.score) == ("PASSED", 1.0), (result.message, result.findings)
    assert "always_equal_object" not in finding_codes(result)


@pytest.mark.parametrize("name", sorted(HONEST))
def test_wrong_standard_library_value_fails(client, name):
    body, _, wrong = HONEST[name]
    result = client.score(call_task(f"value-wrong-{name}", candidate(body), "f", [([], wrong)], LIM))
    assert (status_name(result), result.score) == ("FAILED", 0.0), (result.message, result.findings)
    assert "always_equal_object" not in finding_codes(result)


WHOLE_TESTS = (
    "import datetime, decimal, fractions\n"
    "from collections import Counter, OrderedDict, deque\n"
    "def check(candidate):\n"
    "    assert candidate('counter') == Counter(a=2, b=1)\n"
    "    assert candidate('ordered') == OrderedDict(b=1, a=2)\n"
    "    assert list(candidate('ordered')) == ['b', 'a']\n"
    "    assert candidate('point').x == 1 and candidate('point') == (1, 2)\n"
    "    assert candidate('deque') == deque([1, 2])\n"
    "    assert candidate('fraction') == fractions.Fraction(2, 3)\n"
    "    assert candidate('decimal') == decimal.Decimal('0.10')\n"
    "    assert candidate('date') - datetime.date(2024, 1, 1) == datetime.timedelta(days=59)\n"
    "    assert candidate('big') % 1000 == (3 ** 20000) % 1000\n"
)
WHOLE_CODE = IMPORTS + (
    "def f(kind):\n"
    "    return {\n"
    "        'counter': lambda: Counter('aab'),\n"
    "        'ordered': lambda: OrderedDict([('b', 1), ('a', 2)]),\n"
    "        'point': lambda: namedtuple('Point', 'x y')(1, 2),\n"
    "        'deque': lambda: deque([1, 2]),\n"
    "        'fraction': lambda: fractions.Fraction(4, 6),\n"
    "        'decimal': lambda: decimal.Decimal('0.1'),\n"
    "        'date': lambda: datetime.date(2024, 2, 29),\n"
    "        'big': lambda: 3 ** 20000,\n"
    "    }[kind]()\n"
)


def test_whole_mode_asserts_see_real_standard_library_values(client):
    result = client.score(assert_task("values-whole", WHOLE_CODE, "f", WHOLE_TESTS, LIM))
    assert (status_name(result), result.score) == ("PASSED", 1.0), (result.message, list(result.tests))


def test_whole_mode_wrong_standard_library_value_fails(client):
    code = WHOLE_CODE.replace("Counter('aab')", "Counter('abb')")
    result = client.score(assert_task("values-whole-wrong", code, "f", WHOLE_TESTS, LIM))
    assert status_name(result) == "FAILED", result.message
    assert [t.passed for t in result.tests][:2] == [False, True] or not result.tests[0].passed
    assert "always_equal_object" not in finding_codes(result)


@pytest.mark.parametrize(
    "expected, actual, passed",
    [
        (5, "5.0000001", False),  # an int expected: Python's ==, no tolerance
        (5, "5.0000000001", False),
        (5, "5.0", True),  # 5 == 5.0 in Python
        (5.0, "5.0000000001", True),  # a float expected: tolerance
        ([1, 2.5], "[1.0000000001, 2.5000000001]", False),  # tolerance only where a float is expected
        ([1, 2.5], "[1, 2.5000000001]", True),
    ],
)
def test_tolerance_applies_only_where_a_float_is_expected(client, expected, actual, passed):
    result = client.score(call_task("tolerance", f"def f():\n    return {actual}\n", "f", [([], expected)], LIM))
    assert result.tests[0].passed is passed, result.message


def test_assert_of_an_int_fails_for_a_nearby_float(client):
    code = "def f(n):\n    return n + 0.0000001\n"
    result = client.score(assert_task("tolerance-assert", code, "f", "assert f(5) == 5\n", LIM))
    assert status_name(result) == "FAILED", result.message


CHEATS = {
    "Counter-subclass": "class C(Counter):\n    def __eq__(self, other):\n        return True\n"
    "def f():\n    return C('xy')\n",
    "namedtuple-subclass": "class C(namedtuple('P', 'x y')):\n    __eq__ = lambda self, other: True\n"
    "def f():\n    return C(0, 0)\n",
    "plain-class": "class C:\n    __eq__ = lambda self, other: True\ndef f():\n    return C()\n",
    "ne-only": "class C:\n    def __ne__(self, other):\n        return False\ndef f():\n    return C()\n",
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_candidate_classes_with_their_own_eq_are_still_rejected(client, name):
    task = call_task(f"values-cheat-{name}", IMPORTS + CHEATS[name], "f", [([], {"$tuple": [1, 2]})], LIM)
    result = client.score(task)
    assert (status_name(result), result.score) == ("REJECTED", 0.0), (result.message, result.findings)
    assert "always_equal_object" in finding_codes(result)


@pytest.mark.parametrize(
    "body",
    [
        "import uuid\n    return uuid.UUID(int=5)",  # a stdlib class with __eq__ written in Python
        "import re\n    return re.match('a', 'a')",
        "return iter([1, 2])",
    ],
)
def test_standard_library_objects_that_are_not_values_fail_without_a_finding(client, body):
    result = client.score(call_task("values-stdlib", f"def f():\n    {body}\n", "f", [([], [1, 2])], LIM))
    assert (status_name(result), result.score) == ("FAILED", 0.0), (result.message, result.findings)
    assert "always_equal_object" not in finding_codes(result)


@pytest.mark.parametrize(
    "body, passed",
    [
        ("return fractions.Fraction(1, 2)", True),  # abs(Fraction(1, 2) - 0.5) < 1e-9 in Python
        ("return decimal.Decimal('0.5')", False),  # Decimal - float raises TypeError in Python
        ("return 3 ** 20000", False),  # int - float overflows in Python
    ],
)
def test_abs_difference_asserts_follow_python(client, body, passed):
    task = assert_task("values-close", candidate(body), "f", "assert abs(f() - 0.5) < 1e-9\n", LIM)
    result = client.score(task)
    assert status_name(result) == ("PASSED" if passed else "FAILED"), result.message
