"""Trusted comparisons of what a sandbox returned against expected answers.

Values arrive decoded from tagged JSON: built-ins and the standard value types the
codec rebuilds (Counter, OrderedDict, defaultdict, deque, namedtuples, Fraction,
Decimal, dates and times, range), or `Opaque`, which equals nothing.

`values_equal(actual, expected)` is Python's ``actual == expected`` with one
extension: where the *expected* value is a float (or a complex), a number within the
tolerance also matches, recursively; so ``[1, 2.5]`` is tolerant in its second
position only, and an expected ``5`` needs an actual that Python finds equal to 5
(``5.0`` is, ``5.0000001`` is not). The one other departure from Python: an expected
float NaN matches a float NaN (an expected NaN means "NaN"; Python's ``nan != nan``
would make such a test unpassable). With both tolerances 0 and no NaN, the result is
exactly ``actual == expected``.

Python's ``==`` is quadratic in one case, an int against a Decimal (the int is
converted to decimal digits); integers from a sandbox may have millions of bits, so
those comparisons are decided by magnitude first, and set and dict-key comparisons
that could meet them (after a hash collision) take a guarded path.
"""

from __future__ import annotations

import math
import reprlib
from collections import Counter, OrderedDict, UserDict, UserList, UserString, defaultdict, deque
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

from sandbox.wire.codec import Opaque

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9
_REALS = (bool, int, float, Fraction, Decimal)
_NUMBERS = (*_REALS, complex)
_MAPPINGS = (dict, Counter, OrderedDict, defaultdict)
_GUARD_BITS = 20_000  # an int this long converts to Decimal in well under a millisecond
_LOG10_2 = math.log10(2)
_MISSING = object()
Tolerance = tuple[float, float] | None  # None: exact, as Python compares


def values_equal(
    actual: Any, expected: Any, rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL
) -> bool:
    return _equal(actual, expected, (rel_tol, abs_tol))


_VIEWS = (type({}.keys()), type({}.items()))
_WRAPPERS = (UserList, UserDict, UserString)


def _equal(actual: Any, expected: Any, tol: Tolerance) -> bool:
    if isinstance(actual, Opaque) or isinstance(expected, Opaque):
        return False
    if type(actual) in _WRAPPERS:  # UserList([1]) == [1], as in Python: its data decides
        actual = actual.data
    if type(expected) in _WRAPPERS:
        expected = expected.data
    if type(actual) in _VIEWS and type(expected) in (set, frozenset, *_VIEWS):
        actual = set(actual)  # a keys (items) view equals the set of its keys (items)
    if type(expected) in _VIEWS and type(actual) in (set, frozenset):
        expected = set(expected)
    kind = type(expected)
    if kind is float:
        return _close_real(actual, expected, tol)
    if kind is complex:
        return _close_complex(actual, expected, tol)
    if isinstance(expected, tuple):  # a namedtuple equals any tuple with equal items
        return isinstance(actual, tuple) and _sequences_equal(actual, expected, tol)
    if kind is list or kind is deque:
        return type(actual) is kind and _sequences_equal(actual, expected, tol)
    if kind in _MAPPINGS:
        return type(actual) in _MAPPINGS and _mappings_equal(actual, expected, tol)
    if kind is set or kind is frozenset:
        return type(actual) in (set, frozenset) and _sets_equal(actual, expected)
    return python_equal(actual, expected)


def python_equal(actual: Any, expected: Any) -> bool:
    """``actual == expected`` for decoded leaves, without the int-against-Decimal trap."""
    if type(actual) is int and type(expected) is Decimal:
        return _int_equals_decimal(actual, expected)
    if type(actual) is Decimal and type(expected) is int:
        return _int_equals_decimal(expected, actual)
    return bool(actual == expected)


def _int_equals_decimal(number: int, dec: Decimal) -> bool:
    bits = int.bit_length(number)
    if bits <= _GUARD_BITS:
        return bool(number == dec)
    if not dec.is_finite():
        return False
    # floor(log10 |number|) lies in [floor((bits - 1) log10 2), floor(bits log10 2)]
    low, high = math.floor((bits - 1) * _LOG10_2), math.floor(bits * _LOG10_2)
    if not low - 1 <= dec.adjusted() <= high + 1:
        return False
    return bool(number == dec)  # equal magnitudes: a Decimal as long as the int


def _as_float(number: Any) -> float | None:
    """A real number as a float, or None where the float would not stand for it."""
    try:
        value = float(number)
    except (OverflowError, ValueError):
        return None
    if math.isfinite(value) or type(number) is float or (type(number) is Decimal and not number.is_finite()):
        return value
    return None


def _close(actual: float, expected: float, tol: tuple[float, float]) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=tol[0], abs_tol=tol[1])


def _close_real(actual: Any, expected: float, tol: Tolerance) -> bool:
    if type(actual) is complex:
        return _close_complex(actual, complex(expected, 0.0), tol)
    if type(actual) not in _REALS:
        return False
    if python_equal(actual, expected):
        return True
    if tol is None:
        return False
    if math.isnan(expected):
        return type(actual) is float and math.isnan(actual)
    if not (tol[0] or tol[1]):
        return False  # exact, and float(actual) could round
    value = _as_float(actual)
    return value is not None and _close(value, expected, tol)


def _close_complex(actual: Any, expected: complex, tol: Tolerance) -> bool:
    if type(actual) not in _NUMBERS:
        return False
    if python_equal(actual, expected):
        return True
    if tol is None:
        return False
    if type(actual) is complex:
        real, imag = actual.real, actual.imag
    elif type(actual) is float:
        real, imag = actual, 0.0
    elif not (tol[0] or tol[1]):
        return False  # exact, and float(actual) could round; only a float can be NaN
    else:
        real, imag = _as_float(actual), 0.0
        if real is None or (type(actual) is Decimal and actual.is_nan()):
            return False
    return _close(real, expected.real, tol) and _close(imag, expected.imag, tol)


def _sequences_equal(actual: Any, expected: Any, tol: Tolerance) -> bool:
    return len(actual) == len(expected) and all(_equal(a, e, tol) for a, e in zip(actual, expected, strict=True))


def _has_big_int(values: Iterable[Any], depth: int = 0) -> bool:
    for value in values:
        if type(value) is int and int.bit_length(value) > _GUARD_BITS:
            return True
        if isinstance(value, (tuple, frozenset)) and depth < 64 and _has_big_int(value, depth + 1):
            return True
    return False


def _has_decimal(values: Iterable[Any], depth: int = 0) -> bool:
    for value in values:
        if type(value) is Decimal:
            return True
        if isinstance(value, (tuple, frozenset)) and depth < 64 and _has_decimal(value, depth + 1):
            return True
    return False


class _Keys:
    """Membership in a dict or set as Python decides it (hash, then ==), guarded if need be.

    Python compares keys only after a hash collision, and a hash collision with a
    Decimal is easy to arrange for an int of any length; so when the looked-up keys
    hold Decimals and the stored ones hold huge ints, lookups go through
    `python_equal`, bucket by bucket.
    """

    def __init__(self, stored: Any, looked_up: Any) -> None:
        self.stored = stored
        self.buckets: dict[int, list[Any]] | None = None
        if _has_decimal(looked_up) and _has_big_int(stored):
            self.buckets = {}
            for key in stored:
                self.buckets.setdefault(hash(key), []).append(key)

    def find(self, key: Any) -> Any:
        """The stored key equal to `key`, or _MISSING."""
        if self.buckets is None:
            return key if key in self.stored else _MISSING
        for candidate in self.buckets.get(hash(key), ()):
            if candidate is key or _equal(candidate, key, None):
                return candidate
        return _MISSING


def _sets_equal(actual: Any, expected: Any) -> bool:
    if len(actual) != len(expected):
        return False
    keys = _Keys(actual, expected)
    if keys.buckets is None:
        return bool(actual == expected)
    return all(keys.find(item) is not _MISSING for item in expected)


def _mappings_equal(actual: Any, expected: Any, tol: Tolerance) -> bool:
    keys = _Keys(actual, expected)

    def value_at(key: Any, default: Any) -> Any:
        found = keys.find(key)
        return default if found is _MISSING else dict.__getitem__(actual, found)

    if type(actual) is Counter and type(expected) is Counter:
        # Counter.__eq__ (3.10+): every count agrees, a missing count being zero
        if not all(_equal(value_at(k, 0), v, tol) for k, v in expected.items()):
            return False
        back = _Keys(expected, actual)
        return all(back.find(k) is not _MISSING or _equal(v, 0, tol) for k, v in actual.items())
    if len(actual) != len(expected):
        return False
    for key, value in expected.items():
        got = value_at(key, _MISSING)
        if got is _MISSING or not _equal(got, value, tol):
            return False
    if type(actual) is OrderedDict and type(expected) is OrderedDict:
        return all(_equal(a, e, None) for a, e in zip(actual, expected, strict=True))  # order matters
    return True


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 4, 120, 120, 120

    def repr_int(self, x: int, level: int) -> str:
        if int.bit_length(x) > 14_000:  # str() refuses ints past 4300 digits
            return f"<int of {int.bit_length(x)} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            text = repr(x)
        except Exception:  # noqa: BLE001 - e.g. a Fraction of ints that str() refuses
            return f"<{type(x).__name__}>"
        return text if len(text) <= self.maxother else text[: self.maxother - 3] + "..."


_SHORT = _ShortRepr()


def short_repr(value: Any, limit: int = 300) -> str:
    """A bounded repr for messages: cheap on huge values, never raising (big ints refuse str())."""
    try:
        text = _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - e.g. a namedtuple named 'dict' misleads reprlib
        text = f"<{type(value).__name__}>"
    return text[:limit]


def normalise_stdout(text: str) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).rstrip()


def stdout_matches(actual: str, expected: str) -> bool:
    """Exact after trailing-whitespace normalisation: no prefix and no truncation passes."""
    return normalise_stdout(actual) == normalise_stdout(expected)
