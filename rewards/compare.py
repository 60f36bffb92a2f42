"""Trusted comparisons of what a sandbox returned against expected answers.

Values arrive decoded from tagged JSON, so they are plain built-ins (or `Opaque`, which
equals nothing). Semantics follow Python's ``==`` (1 == 1.0 == True, a list never equals
a tuple) except that floats compare with a tolerance, recursively.
"""

from __future__ import annotations

import math
from typing import Any

from sandbox.runner.codec import Opaque

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9
_NUMBERS = (bool, int, float)


def values_equal(
    actual: Any, expected: Any, rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL
) -> bool:
    if isinstance(actual, Opaque) or isinstance(expected, Opaque):
        return False
    if type(actual) in _NUMBERS and type(expected) in _NUMBERS:
        if type(actual) is float or type(expected) is float:
            a, b = float(actual), float(expected)
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)
        return actual == expected
    if type(actual) is complex or type(expected) is complex:
        if type(actual) not in (*_NUMBERS, complex) or type(expected) not in (*_NUMBERS, complex):
            return False
        a, b = complex(actual), complex(expected)
        return values_equal(a.real, b.real, rel_tol, abs_tol) and values_equal(a.imag, b.imag, rel_tol, abs_tol)
    if type(actual) is not type(expected):
        # Python: a set equals a frozenset, str never equals bytes, list never tuple
        return {type(actual), type(expected)} == {set, frozenset} and actual == expected
    if type(actual) in (list, tuple):
        return len(actual) == len(expected) and all(
            values_equal(a, b, rel_tol, abs_tol) for a, b in zip(actual, expected, strict=True)
        )
    if type(actual) is dict:
        return actual.keys() == expected.keys() and all(
            values_equal(actual[k], expected[k], rel_tol, abs_tol) for k in expected
        )
    return bool(actual == expected)  # str, bytes, None, sets of hashables


def truthy(value: Any) -> bool | None:
    """Python truthiness for plain values; None when the value's truth is unknowable."""
    if isinstance(value, Opaque):
        return None
    return bool(value)


def normalise_stdout(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip()


def stdout_matches(actual: str, expected: str) -> bool:
    """Exact after trailing-whitespace normalisation: no prefix and no truncation passes."""
    return normalise_stdout(actual) == normalise_stdout(expected)
