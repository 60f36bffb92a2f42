import pytest

from rewards.compare import stdout_matches, truthy, values_equal
from sandbox.runner.codec import Opaque


@pytest.mark.parametrize(
    "actual, expected, equal",
    [
        (1, 1.0, True),
        (True, 1, True),
        (0.1 + 0.2, 0.3, True),
        (1.0, 1.001, False),
        ([1.0, [2.0000000001]], [1, [2]], True),
        ((1, 2), [1, 2], False),
        ({1, 2}, frozenset({1, 2}), True),
        ({"a": 0.3}, {"a": 0.1 + 0.2}, True),
        ({"a": 1}, {"b": 1}, False),
        ("1", 1, False),
        (None, 0, False),
        (float("nan"), float("nan"), True),
        (b"a", "a", False),
        (1 + 1j, complex(1, 1.0000000001), True),
        ([1, 2], [1, 2, 3], False),
    ],
)
def test_values_equal(actual, expected, equal):
    assert values_equal(actual, expected) is equal


def test_tolerance_is_configurable():
    assert values_equal(1.0, 1.05, rel_tol=0.1)
    assert not values_equal(1.0, 1.05, rel_tol=0.01)


def test_opaque_equals_nothing_and_has_no_truth():
    ghost = Opaque("Liar", "<Liar>", custom_eq=True)
    assert not values_equal(ghost, ghost)
    assert truthy(ghost) is None


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
