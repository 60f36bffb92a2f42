import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import json
import math
import re
import typing
import uuid

import pytest

from rewards.compare import short_repr
from sandbox.wire import codec

Counter, OrderedDict, defaultdict, deque = (
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
    collections.deque,
)
D, F = decimal.Decimal, fractions.Fraction
UTC2 = datetime.timezone(datetime.timedelta(hours=2))
Point = collections.namedtuple("Point", "x y")


class Pixel(typing.NamedTuple):
    x: int
    y: float = 0.0


class Labelled(Point):
    """Subclassing a namedtuple to add methods is common; tuple behaviour is unchanged."""

    def norm(self) -> float:
        return math.hypot(self.x, self.y)


class Color(enum.IntEnum):
    RED = 1


class Mood(str, enum.Enum):
    HAPPY = "happy"


class Weight(float, enum.Enum):
    LIGHT = 0.5


def candidate(source: str) -> dict:
    """Run code the way the sandbox runs a candidate: compiled as <candidate>, in __candidate__."""
    namespace: dict = {"__name__": "__candidate__"}
    exec(compile("from collections import *\n" + source, "<candidate>", "exec"), namespace)
    return namespace


def round_trip(value):
    return codec.loads(codec.dumps(value))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**100,
        1.5,
        "héllo",
        [1, [2, (3, 4)]],
        (1, "a"),
        (),
        {"a": 1},
        {1: "x", (1, 2): [3]},
        {1, 2},
        frozenset({"x"}),
        b"\x00\xff",
        bytearray(b"ab"),
        1 + 2j,
        float("inf"),
        float("-inf"),
        Counter("abracadabra"),
        Counter({"a": 0, "b": -2, "c": 1.5}),
        OrderedDict([("b", 1), ("a", [2])]),
        deque([1, (2,)]),
        deque([], maxlen=0),
        deque([1, 2], maxlen=2),
        F(-3, 7),
        F(10**4500, 3),  # parts past the JSON int limit travel as $int
        D("1.10"),
        D("-0"),
        D("1E+999999"),
        D("Infinity"),
        D("-Infinity"),
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 1, 1, 12, 30, 5, 17),
        datetime.datetime(2024, 1, 1, 12, tzinfo=UTC2),
        datetime.datetime(2024, 11, 3, 1, 30, fold=1),
        datetime.time(23, 59, 59, 999999),
        datetime.time(8, tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30), "IST-ish")),
        datetime.timedelta(days=-3, seconds=5, microseconds=7),
        datetime.timezone.utc,
        datetime.timezone(datetime.timedelta(minutes=90), "X"),
        range(0),
        range(-5, 10**5000, 7),
        10**5000,
        -(10**5000),
        [10**5000, {10**5000: {10**5000}}],
    ],
    ids=lambda v: short_repr(v, 40),
)
def test_round_trip(value):
    decoded = round_trip(value)
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert decoded == expected and type(decoded) is type(expected)
    assert short_repr(decoded) == short_repr(expected)


def test_round_trips_keep_what_equality_does_not_see():
    assert list(round_trip(OrderedDict([("b", 1), ("a", 2)]))) == ["b", "a"]
    assert round_trip(deque([1], maxlen=3)).maxlen == 3
    assert str(round_trip(D("1.10"))) == "1.10"
    assert round_trip(datetime.datetime(2024, 11, 3, 1, 30, fold=1)).fold == 1
    assert round_trip(datetime.timezone(datetime.timedelta(minutes=90), "X")).tzname(None) == "X"
    assert round_trip(datetime.datetime(2024, 1, 1, tzinfo=UTC2)).utcoffset() == datetime.timedelta(hours=2)


def test_defaultdict_crosses_with_its_items_but_not_its_factory():
    value = defaultdict(list, {1: ["a"]})
    decoded = round_trip(value)
    assert type(decoded) is defaultdict and decoded.default_factory is None and decoded == {1: ["a"]}


@pytest.mark.parametrize("value", [Point(1, 2), Pixel(3, 4.5), Labelled(5, 6)], ids=repr)
def test_namedtuples_cross_as_namedtuples(value):
    decoded = round_trip(value)
    assert decoded == value == tuple(value) and type(decoded).__name__ == type(value).__name__
    assert decoded._fields == value._fields and decoded.x == value.x
    assert type(round_trip(value)) is type(decoded), "classes are cached by (name, fields)"


def test_candidate_namedtuples_cross_too():
    ns = candidate(
        "P = namedtuple('P', ['a', 'b'])\nclass Q(P):\n    def total(self):\n        return self.a + self.b\n"
    )
    assert codec.encode(ns["Q"](1, 2)) == {"$namedtuple": {"name": "Q", "fields": ["a", "b"], "values": [1, 2]}}


def test_documented_shapes():
    shapes = [
        (10**5000, {"$int": format(10**5000, "x")}),
        (-(10**5000), {"$int": "-" + format(10**5000, "x")}),
        (Counter("aab"), {"$Counter": [["a", 2], ["b", 1]]}),
        (OrderedDict(a=1), {"$OrderedDict": [["a", 1]]}),
        (defaultdict(int, a=1), {"$defaultdict": [["a", 1]]}),
        (deque([1], maxlen=4), {"$deque": {"items": [1], "maxlen": 4}}),
        (Point(1, 2), {"$namedtuple": {"name": "Point", "fields": ["x", "y"], "values": [1, 2]}}),
        (F(1, 3), {"$Fraction": [1, 3]}),
        (D("1.10"), {"$Decimal": "1.10"}),
        (datetime.date(2024, 1, 2), {"$date": [2024, 1, 2]}),
        (datetime.time(1, 2, 3, 4), {"$time": [1, 2, 3, 4, None, 0]}),
        (
            datetime.datetime(2024, 1, 2, 3, tzinfo=UTC2),
            {"$datetime": [2024, 1, 2, 3, 0, 0, 0, {"$timezone": [[0, 7200, 0], None]}, 0]},
        ),
        (datetime.timedelta(days=-1), {"$timedelta": [-1, 0, 0]}),
        (datetime.timezone(datetime.timedelta(hours=-1), "W"), {"$timezone": [[-1, 82800, 0], "W"]}),
        (range(1, 9, 2), {"$range": [1, 9, 2]}),
        (Color.RED, 1),
        (Mood.HAPPY, "happy"),
        (Weight.LIGHT, 0.5),
    ]
    for value, shape in shapes:
        assert codec.encode(value) == shape
        assert json.loads(json.dumps(shape)) == shape


def test_enum_members_with_a_plain_mixin_cross_as_the_plain_value():
    for member, plain in ((Color.RED, 1), (Mood.HAPPY, "happy"), (Weight.LIGHT, 0.5)):
        decoded = round_trip(member)
        assert decoded == plain and type(decoded) is type(plain)


def test_plain_enum_members_and_flags_with_their_own_len_stay_opaque():
    class Plain(enum.Enum):
        A = 1

    decoded = round_trip(Plain.A)
    assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq
    assert round_trip(enum.IntFlag("Perm", "R W")(3)) == 3  # IntFlag: int's ==, hash and truth


def test_a_zone_crosses_as_its_fixed_offset_at_that_time():
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone data")
    summer = datetime.datetime(2024, 7, 1, 12, tzinfo=paris)
    decoded = round_trip(summer)
    assert decoded == summer and decoded.utcoffset() == datetime.timedelta(hours=2)
    assert decoded.tzname() == "CEST"


def test_a_tzinfo_without_an_offset_makes_the_value_opaque():
    class Nowhere(datetime.tzinfo):
        def utcoffset(self, dt):
            return None

    decoded = round_trip(datetime.datetime(2024, 1, 1, tzinfo=Nowhere()))
    assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq


def test_nan_round_trips_as_nan():
    assert math.isnan(codec.loads(codec.dumps(float("nan"))))
    assert round_trip(D("NaN")).is_nan()


def test_tuple_and_list_stay_distinct():
    assert codec.loads(codec.dumps((1, 2))) != codec.loads(codec.dumps([1, 2]))


def test_ints_switch_to_hex_before_json_would_refuse_them():
    assert codec.encode(2**9999) == 2**9999  # ~3010 digits: plain JSON
    assert codec.dumps([10**4500]).startswith('[{"$int":')  # json.dumps(10**4500) raises
    assert codec.loads(codec.dumps(F(10**4500 + 1, 10**4499))) == F(10**4500 + 1, 10**4499)


def test_values_past_the_caps_become_opaque_instead_of_failing_the_reply():
    for value in (1 << (4 * codec.MAX_INT_HEX + 8), F(1, 3 ** (codec.MAX_FRACTION_BITS)), D("1" * 6000), D("sNaN")):
        decoded = round_trip(value)
        assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq


# ------------------------------------------------------------ always-equal objects


def test_a_class_with_an_eq_written_by_the_candidate_is_custom_eq():
    ns = candidate(
        "class Always:\n    def __eq__(self, other):\n        return True\n"
        "class NeOnly:\n    def __ne__(self, other):\n        return False\n"
        "class Lambda:\n    __eq__ = lambda self, other: True\n"
        "class Static:\n    __eq__ = staticmethod(lambda *a: True)\n"
        "class TypeAsEq:\n    __eq__ = bool\n"
        "class Child(Always):\n    pass\n"
        "class Liar(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n"
        "class Cheat(Counter):\n    def __eq__(self, other):\n        return True\n"
        "class Tup(namedtuple('P', 'x y')):\n    def __eq__(self, other):\n        return True\n"
        "class Bad(str, __import__('enum').Enum):\n    A = 'a'\n    def __eq__(self, other):\n        return True\n"
        "    __hash__ = str.__hash__\n"
    )
    values = [ns["Always"](), ns["NeOnly"](), ns["Lambda"](), ns["Static"](), ns["TypeAsEq"](), ns["Child"]()]
    values += [ns["Liar"](3), ns["Cheat"]("ab"), ns["Tup"](1, 2), ns["Bad"].A]
    for value in values:
        decoded = round_trip(value)
        assert isinstance(decoded, codec.Opaque) and decoded.custom_eq, value
        assert decoded != decoded and not (decoded == 3)
        assert codec.find_custom_eq([{"k": Counter({1: decoded})}]) is decoded


@pytest.mark.parametrize(
    "value",
    [
        re.match("a", "a"),
        uuid.UUID(int=5),  # __eq__ written in Python, in the standard library
        iter([1]),
        object(),
        Ellipsis,
    ],
    ids=lambda v: type(v).__name__,
)
def test_standard_library_objects_that_are_not_values_are_not_custom_eq(value):
    decoded = round_trip(value)
    assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq


def test_subclasses_of_value_types_stay_opaque_even_without_their_own_eq():
    class MyCounter(Counter):
        pass

    class MyDecimal(decimal.Decimal):
        pass

    class FakeTuple(tuple):
        _fields = ("a",)

    for value in (MyCounter("a"), MyDecimal("1"), FakeTuple((1,))):
        decoded = round_trip(value)
        assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq, value


def test_namedtuple_subclasses_that_change_tuple_behaviour_stay_opaque():
    ns = candidate(
        "P = namedtuple('P', 'x y')\n"
        "class Iter(P):\n    def __iter__(self):\n        return iter([9, 9])\n"
        "class Truth(P):\n    def __bool__(self):\n        return False\n"
        "class Renamed(P):\n    _fields = ('a', 'b')\n"
    )
    for name in ("Iter", "Truth", "Renamed"):
        decoded = round_trip(ns[name](1, 2))
        assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq, name


def test_generated_eq_of_a_candidate_dataclass_is_not_the_cheat():
    ns = candidate("from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n")
    decoded = round_trip(ns["P"](1))
    assert isinstance(decoded, codec.Opaque) and not decoded.custom_eq
    assert dataclasses.is_dataclass(ns["P"])


def test_the_encoder_never_asks_a_hostile_metaclass():
    asked = []

    class Meta(type):
        def __getattribute__(cls, name):
            asked.append(name)
            raise RuntimeError("no")

        def __eq__(cls, other):
            asked.append("eq")
            return True

        __hash__ = type.__hash__

    ns = candidate("def eq(self, other):\n    return True\n")
    Hostile = Meta("Hostile", (tuple,), {"__eq__": ns["eq"], "_fields": ("a",)})
    Quiet = Meta("Quiet", (), {})
    assert codec.encode(Hostile((1,)))["custom_eq"] is True
    assert codec.encode(Quiet())["custom_eq"] is False
    assert asked == []


def test_custom_eq_is_assumed_when_the_class_cannot_be_inspected():
    class Plain:
        pass

    assert codec.has_candidate_eq(Plain) is False
    assert codec.has_candidate_eq(42) is True  # not even a class: assume the worst


def test_plain_json_objects_decode_as_dicts():
    assert codec.decode(json.loads('{"a": [1, 2]}')) == {"a": [1, 2]}


# ------------------------------------------------------------ hostile payloads

TOO_MANY_FIELDS = [f"f{i}" for i in range(codec.MAX_FIELDS + 1)]


def nt(name="P", fields=("x",), values=(1,)):
    return {"$namedtuple": {"name": name, "fields": list(fields), "values": list(values)}}


@pytest.mark.parametrize(
    "data",
    [
        {"$tuple": 5},
        {"$bytes": "!!"},
        {"$float": "1e400x"},
        {"$complex": [1]},
        {"$dict": [[1]]},
        {"$nope": []},
        {"$dict": [[[1], 2]]},
        {"$dict": [[1, 2], [1, 3]]},  # duplicate key
        {"$set": [[1]]},
        {"$tuple": [], "x": 1},
        {"$opaque": 5, "repr": "", "custom_eq": False},
        {"$opaque": "x", "repr": "", "custom_eq": "yes"},
        {"$opaque": "x", "extra": 1},
        # $int
        {"$int": "0x1f"},
        {"$int": "1F"},
        {"$int": " 1f"},
        {"$int": "1_f"},
        {"$int": "+1"},
        {"$int": ""},
        {"$int": 5},
        {"$int": "1" * (codec.MAX_INT_HEX + 2)},
        # mappings
        {"$Counter": [["a"]]},
        {"$Counter": {"a": 1}},
        {"$Counter": [[{"$dict": []}, 1]]},  # unhashable key
        {"$OrderedDict": [["a", 1], ["a", 2]]},
        {"$defaultdict": "a"},
        # deque
        {"$deque": [1, 2]},
        {"$deque": {"items": [1, 2], "maxlen": 1}},
        {"$deque": {"items": [], "maxlen": -1}},
        {"$deque": {"items": [], "maxlen": True}},
        {"$deque": {"items": [], "maxlen": None, "x": 1}},
        # namedtuple
        nt(name="class"),
        nt(name="1P"),
        nt(name="a.b"),
        nt(name="P" * 101),
        nt(name=None),
        nt(fields=["_x"]),
        nt(fields=["def"]),
        nt(fields=["x-y"]),
        nt(fields=["é"]),
        nt(fields=["x", "x"], values=[1, 2]),
        nt(fields=[1]),
        nt(fields=TOO_MANY_FIELDS, values=range(len(TOO_MANY_FIELDS))),
        nt(values=[]),
        {"$namedtuple": {"name": "P", "fields": "x y", "values": [1, 2]}},
        {"$namedtuple": {"name": "P", "fields": ["x"]}},
        # Fraction
        {"$Fraction": [1, 0]},
        {"$Fraction": [1, -2]},
        {"$Fraction": [1]},
        {"$Fraction": [1.5, 2]},
        {"$Fraction": [True, 2]},
        {"$Fraction": [{"$int": "f" * (codec.MAX_FRACTION_BITS // 4 + 1)}, 1]},
        # Decimal
        {"$Decimal": "sNaN"},
        {"$Decimal": "1_0"},
        {"$Decimal": " 1"},
        {"$Decimal": "1e9999999999999999999"},
        {"$Decimal": "1" * (codec.MAX_DECIMAL_CHARS + 1)},
        {"$Decimal": "\u0661"},  # an Arabic-Indic digit: Decimal() takes it, we do not
        {"$Decimal": 1.5},
        # dates and times
        {"$date": [2023, 2, 29]},
        {"$date": [2023, 2]},
        {"$date": [True, 1, 1]},
        {"$date": [2**70, 1, 1]},
        {"$datetime": [2024, 1, 1, 2**70, 0, 0, 0, None, 0]},
        {"$complex": [{"$int": "f" * 300}, 0]},
        {"$complex": [10**400, 0]},
        {"$date": ["2023", 1, 1]},
        {"$time": [25, 0, 0, 0, None, 0]},
        {"$time": [1, 0, 0, 0, {"$tuple": []}, 0]},
        {"$time": [1, 0, 0, 0, None, 2]},
        {"$datetime": [2024, 1, 1, 0, 0, 0, 0, None]},
        {"$datetime": [2024, 1, 1, 0, 0, 0, 0, "UTC", 0]},
        {"$timedelta": [10**10, 0, 0]},
        {"$timedelta": [0, 86400, 0]},
        {"$timedelta": [0, 0, -1]},
        {"$timezone": [[1, 0, 0], None]},  # a whole day: out of range
        {"$timezone": [[0, 0, 0], 5]},
        {"$timezone": [[0, 0, 0], "x" * 101]},
        # range
        {"$range": [0, 10, 0]},
        {"$range": [0, 10]},
        {"$range": [0, 10.0, 1]},
    ],
    ids=lambda d: json.dumps(d)[:60],
)
def test_malformed_payloads_raise_value_error(data):
    with pytest.raises(ValueError):
        codec.decode(data)


def test_one_value_cannot_make_the_decoder_build_classes_without_bound():
    many = [nt(name=f"P{i}") for i in range(codec.MAX_NEW_CLASSES_PER_VALUE + 300)]
    with pytest.raises(ValueError, match="namedtuple"):
        codec.decode(many)
    assert len(codec.decode([nt(name="Same")] * 1000)) == 1000


def test_one_value_cannot_hold_fractions_without_bound():
    big = {"$Fraction": [{"$int": "f" * (codec.MAX_FRACTION_BITS // 4)}, 1]}
    count = codec.MAX_FRACTION_BITS_PER_VALUE // codec.MAX_FRACTION_BITS
    assert len(codec.decode([big] * (count - 1))) == count - 1
    with pytest.raises(ValueError, match="Fraction"):
        codec.decode([big] * (count + 1))


def test_depth_is_capped():
    deep = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ValueError):
        codec.encode(deep)
    nested: object = 1
    for _ in range(codec.MAX_DEPTH + 5):
        nested = {"$Counter": [["k", nested]]}
    with pytest.raises(ValueError):
        codec.decode(nested)
