import json
import math

import pytest

from sandbox.runner import codec


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
    ],
)
def test_round_trip(value):
    decoded = codec.loads(codec.dumps(value))
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert decoded == expected and type(decoded) is type(expected)


def test_nan_round_trips_as_nan():
    assert math.isnan(codec.loads(codec.dumps(float("nan"))))


def test_tuple_and_list_stay_distinct():
    assert codec.loads(codec.dumps((1, 2))) != codec.loads(codec.dumps([1, 2]))


def test_hostile_objects_become_opaque_and_equal_nothing():
    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    class Weird:
        def __repr__(self):
            raise RuntimeError("boom")

    for value, custom_eq in ((Liar(3), True), (Weird(), False)):
        decoded = codec.loads(codec.dumps(value))
        assert isinstance(decoded, codec.Opaque)
        assert decoded.custom_eq is custom_eq
        assert decoded != decoded and not (decoded == 3)


def test_plain_json_objects_decode_as_dicts():
    assert codec.decode(json.loads('{"a": [1, 2]}')) == {"a": [1, 2]}


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
    ],
)
def test_malformed_tags_raise_value_error(data):
    with pytest.raises((ValueError, TypeError)):
        codec.decode(data)


def test_depth_is_capped():
    deep = []
    for _ in range(codec.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(ValueError):
        codec.encode(deep)
