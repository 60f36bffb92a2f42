import collections
import datetime
from decimal import Decimal as D
from fractions import Fraction as F

import pytest

from rewards.compare import short_repr, stdout_matches, values_equal
from sandbox.wire import codec
from sandbox.wire.codec import Opaque

Counter, OrderedDict, defaultdict, deque = (
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
)
Point = collections.namedtuple("Point", "x y")
Other = collections.namedtuple("Other", "a b")
UTC, UTC2 = datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=2))
BIG = 3**20000
HASH_MODULUS = 2**61 - 1  # sys.hash_info.modulus: hash(n) == hash(n + k * modulus)


@pytest.mark.parametrize(
    "actual, expected, equal",
    [
        (1, 1.0, True),
        (True, 1, True),
        (0.1 + 0.2, 0.3, True),
        (1.0, 1.001, False),
        ([1.0, [2.0000000001]], [1, [2]], False),  # 2 is an int: no tolerance there
        ([1, [2.0000000001]], [1, [2.0]], True),
        (5.0000001, 5, False),
        (5.0000000001, 5, False),
        (5.0, 5, True),
        (5, 5.0000000001, True),  # an int actual, a float expected: tolerance
        ([1.0000000001, 2.5000000001], [1, 2.5], False),
        ([1, 2.5000000001], [1, 2.5], True),
        ((1, 2), [1, 2], False),
        ({1, 2}, frozenset({1, 2}), True),
        ({"a": 0.3}, {"a": 0.1 + 0.2}, True),
        ({"a": 1}, {"b": 1}, False),
        ("1", 1, False),
        (None, 0, False),
        (float("nan"), float("nan"), True),  # the one departure from Python: an expected NaN
        ([float("nan")], [float("nan")], True),
        (D("NaN"), float("nan"), False),
        (b"a", "a", False),
        (1 + 1j, complex(1, 1.0000000001), True),
        (1 + 1e-12j, 1.0, True),  # a float expected: tolerance on both parts of a complex
        (1 + 1e-12j, 1, False),  # an int expected: exact
        (complex(1, 0), 1, True),
        ([1, 2], [1, 2, 3], False),
        (F(1, 3), 0.3333333333, True),  # tolerance where a float is expected, whatever the actual
        (D("0.1"), 0.1, True),
        (0.1, D("0.1"), False),  # a Decimal expected: exact, as Python
        (0.3333333, F(1, 3), False),
        (BIG, float(10**300), False),
        (BIG, BIG, True),
        (Counter(a=1.0000000001), Counter(a=1.0), True),
        (Counter(a=1.0000000001), Counter(a=1), False),
        (Counter(a=1, b=1e-12), Counter(a=1), False),  # the missing count is an int zero
        (Point(1, 2.0000000001), (1, 2.0), True),
        ((1, 2.0000000001), Point(1, 2.0), True),
        (OrderedDict(a=1.0000000001), OrderedDict(a=1.0), True),
        (deque([1.0000000001]), deque([1.0]), True),
        (deque([1.0]), [1.0], False),
        ({"k": [Point(1, F(1, 2))]}, {"k": [(1, 0.5)]}, True),
        ({(1, 2): 3.0000000001}, {(1, 2): 3.0}, True),
        ({(1.0000000001, 2): 3.0}, {(1, 2): 3.0}, False),  # keys compare exactly
        ({1.0000000001}, {1.0}, False),  # and so do set elements
    ],
    ids=lambda v: short_repr(v, 30),
)
def test_values_equal(actual, expected, equal):
    assert values_equal(actual, expected) is equal


def _python_pairs():
    """Values whose == across types is subtle; every ordered pair is compared."""
    values = [
        0,
        1,
        True,
        False,
        1.0,
        0.5,
        -0.0,
        float("inf"),
        1 + 0j,
        0.5 + 0j,
        F(1, 2),
        F(1),
        D("0.5"),
        D("1"),
        D("1.0"),
        D("0.1"),
        0.1,
        D("Infinity"),
        BIG,
        10**9542,
        D("1E+9542"),  # BIG's magnitude: the guard must compare it exactly
        "1",
        b"1",
        None,
        [],
        (),
        [1, 2],
        (1, 2),
        Point(1, 2),
        Other(1, 2),
        deque([1, 2]),
        deque([1, 2], maxlen=5),
        deque([2, 1]),
        {},
        {"a": 1, "b": 2},
        {"b": 2, "a": 1},
        Counter(a=1, b=2),
        Counter(a=1, b=2, c=0),
        Counter(a=1.0, b=2),
        OrderedDict(a=1, b=2),
        OrderedDict(b=2, a=1),
        defaultdict(None, a=1, b=2),
        {"a": 1, "b": 2, "c": 0},
        set(),
        frozenset(),
        {1, 2},
        frozenset({1, 2}),
        {1.0, 2},
        range(0),
        range(5, 5),
        range(0, 3),
        range(0, 3, 1),
        [0, 1, 2],
        datetime.date(2024, 1, 1),
        datetime.datetime(2024, 1, 1),
        datetime.datetime(2024, 1, 1, tzinfo=UTC),
        datetime.datetime(2024, 1, 1, 2, tzinfo=UTC2),
        datetime.time(0),
        datetime.time(2, tzinfo=UTC2),
        datetime.time(0, tzinfo=UTC),
        datetime.timedelta(0),
        datetime.timedelta(days=1),
        datetime.timedelta(seconds=86400),
        UTC,
        datetime.timezone(datetime.timedelta(0), "Z"),
        UTC2,
        [1.0, (2, F(1, 2))],
        [1, (2.0, 0.5)],
        {(1, 2): [D("0.5")]},
        {(1.0, 2.0): [0.5]},
    ]
    return [(a, b) for a in values for b in values]


def test_with_no_tolerance_values_equal_is_pythons_eq():
    for actual, expected in _python_pairs():
        assert values_equal(actual, expected, 0, 0) is (actual == expected), (short_repr(actual), short_repr(expected))


def test_decoded_values_compare_like_the_originals():
    for actual, expected in _python_pairs():
        decoded = codec.loads(codec.dumps(actual)), codec.loads(codec.dumps(expected))
        assert values_equal(*decoded, 0, 0) is (actual == expected), (short_repr(actual), short_repr(expected))


def test_tolerance_is_configurable():
    assert values_equal(1.0, 1.05, rel_tol=0.1)
    assert not values_equal(1.0, 1.05, rel_tol=0.01)
    assert values_equal(D("1.0"), 1.05, rel_tol=0.1)


def test_ints_too_large_for_floats_compare_exactly():
    assert values_equal(BIG, BIG) and not values_equal(BIG + 1, BIG)
    assert not values_equal(BIG, 1e300) and not values_equal(F(BIG, 3), 1.5)
    assert not values_equal(D("1e400"), float("inf"))  # float() would say inf; Python says no


def test_ints_against_decimals_are_decided_by_magnitude_first():
    huge = 1 << (4 * codec.MAX_INT_HEX)  # converting it to Decimal would take tens of seconds
    assert not values_equal(huge, D(5)) and not values_equal(D(5), huge)
    assert not values_equal([huge], [D("1E+5")])
    assert values_equal(10**30000, D("1E+30000")) and not values_equal(10**30000 + 1, D("1E+30000"))


def test_hash_collisions_with_decimals_take_the_guarded_path():
    huge = 5 + HASH_MODULUS * (1 << (4 * codec.MAX_INT_HEX))
    assert hash(huge) == hash(D(5))
    assert not values_equal({huge}, {D(5)})
    assert not values_equal({huge: 1}, {D(5): 1})
    assert not values_equal(Counter({(huge,): 1}), Counter({(D(5),): 1}))
    assert values_equal({10**30000, 1}, {D("1E+30000"), 1})
    assert values_equal({(10**30000,): 2.0000000001}, {(D("1E+30000"),): 2.0})


def test_counters_treat_missing_counts_as_zero_only_against_counters():
    assert values_equal(Counter(a=1, z=0), Counter(a=1))
    assert values_equal(Counter(a=1), Counter(a=1, z=0.0))
    assert not values_equal(Counter(a=1, z=0), {"a": 1})
    assert not values_equal({"a": 1}, Counter(a=1, z=0))


def test_ordered_dicts_care_about_order_only_between_themselves():
    assert not values_equal(OrderedDict(a=1, b=2), OrderedDict(b=2, a=1))
    assert values_equal(OrderedDict(a=1, b=2), {"b": 2, "a": 1})
    assert values_equal({"b": 2, "a": 1}, OrderedDict(a=1, b=2))


def test_opaque_equals_nothing():
    ghost = Opaque("Liar", "<Liar>", custom_eq=True)
    assert not values_equal(ghost, ghost)
    assert not values_equal([ghost], [ghost]) and not values_equal(Counter({1: ghost}), Counter({1: ghost}))


def test_short_repr_is_bounded_and_never_raises():
    assert short_repr(BIG) == f"<int of {BIG.bit_length()} bits>"
    assert "int of" in short_repr([1, {"k": BIG}])
    assert short_repr(F(BIG, 7)) == "<Fraction>"
    assert len(short_repr(list(range(10**6)))) < 100
    trap = codec.decode({"$namedtuple": {"name": "dict", "fields": ["a"], "values": [1]}})
    assert short_repr(trap)  # reprlib would treat it as a dict and fail
    assert short_repr("x" * 1000, 50) == short_repr("x" * 1000)[:50]


@pytest.mark.parametrize(
    "actual, expected, ok",
    [
        ("1 2\n", "1 2", True),
        ("1 2   \r\nx\n\n", "1 2\nx", True),
        ("1 2", "1 2 3", False),
        ("1 2 3", "1 2", False),
        ("", "0", False),
        (" 1", "1", False),
    ],
)
def test_stdout_rejects_prefixes_and_truncation(actual, expected, ok):
    assert stdout_matches(actual, expected) is ok
