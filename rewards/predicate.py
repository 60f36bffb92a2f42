"""Evaluate an assert's test expression on the trusted side, over values the sandbox returned.

A split assert (``assert candidate(x) == a and math.isclose(candidate(y), b)``) is kept here
as an expression tree whose candidate calls are replaced by observation slots. The sandbox
only ever performs the calls, with arguments as data; the comparison, the boolean logic and
every expected value stay in this process. So nothing the candidate defines (an ``__eq__``
that answers True, a patched ``math.isclose``, a rebound builtin) takes part in the verdict.

The evaluator is deliberately small: a whitelist of node types, pure builtins, ``math``
functions and non-mutating methods of plain values, with size guards on everything that
can grow (``*``, ``**``, ``<<``, ``range``). What it cannot evaluate is decided statically
(`supported`), and such tests run in the sandbox's judge instead. Values come from
`sandbox.wire.codec.decode`: plain built-ins, standard-library value types, or `Opaque`,
which no comparison may pass.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from rewards.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL, values_equal
from sandbox.wire.codec import Opaque, find_custom_eq

OBSERVATION = "\x00obs"  # prefix of slot names: no Python source can spell it
MAX_ITEMS = 1_000_000  # longest sequence an operation here may build
_MAX_POW_BITS = 1 << 16

_FUNCTIONS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        abs, all, any, bool, chr, dict, divmod, float, frozenset, int, isinstance, len, list, max,
        min, ord, repr, reversed, round, set, sorted, str, sum, tuple, type, bytes, complex, enumerate, zip,
    )
}  # fmt: skip
MATH = {
    name: getattr(math, name)
    for name in (
        "isclose", "fabs", "floor", "ceil", "sqrt", "isnan", "isinf", "isfinite", "log", "log2", "log10",
        "exp", "pi", "e", "inf", "nan", "tau", "trunc", "gcd", "hypot", "pow",
    )
}  # fmt: skip
# Non-mutating methods and attributes of plain values (and of the types themselves: key=str.lower).
_METHODS: dict[type, frozenset[str]] = {
    str: frozenset(
        "lower upper strip lstrip rstrip split rsplit join startswith endswith replace count find rfind index "
        "rindex isdigit isalpha isalnum isspace islower isupper isnumeric isdecimal title capitalize casefold "
        "zfill center ljust rjust splitlines partition rpartition swapcase istitle".split()
    ),
    bytes: frozenset("decode startswith endswith count find split strip lower upper hex".split()),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"keys", "values", "items", "get"}),
    set: frozenset("issubset issuperset union intersection difference symmetric_difference isdisjoint".split()),
    frozenset: frozenset("issubset issuperset union intersection difference symmetric_difference isdisjoint".split()),
    complex: frozenset({"real", "imag", "conjugate"}),
    int: frozenset({"bit_length", "real", "imag"}),
    float: frozenset({"is_integer", "real", "imag"}),
}
_ATTRIBUTE_NAMES = frozenset().union(*_METHODS.values()) | {
    "numerator", "denominator", "year", "month", "day", "hour", "minute", "second", "microsecond",
    "days", "seconds", "microseconds", "most_common", "total", "elements",
}  # fmt: skip
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift, ast.BitAnd: operator.and_, ast.BitOr: operator.or_, ast.BitXor: operator.xor,
}  # fmt: skip
_ORDER: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_NODES = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp,
    ast.BinOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.Call, ast.keyword,
    ast.Attribute, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


class Unjudgeable(Exception):
    """The expression cannot be evaluated on these values (an opaque value, an unsafe size...)."""


class NotData(Unjudgeable):
    """The candidate returned an object that is not plain data (a generator, an instance of its
    own class) and the test does more with it than compare it: only real Python can say."""


class ObservationFailed(Exception):
    """A candidate call the expression needs did not produce a value; `record` says how."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(str(record.get("kind")))
        self.record = record


def is_slot(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id.startswith(OBSERVATION)


def slot(index: int) -> ast.Name:
    return ast.Name(f"{OBSERVATION}{index}", ast.Load())


def has_slot(node: ast.AST) -> bool:
    """Whether the candidate produced (part of) this expression's value; computed once per
    node (plans are cached and judged over and over)."""
    known = getattr(node, "_rft_observed", None)
    if known is None:
        known = any(is_slot(n) for n in ast.walk(node))
        node._rft_observed = known  # type: ignore[attr-defined]
    return bool(known)


def supported(node: ast.AST, names: Mapping[str, Any]) -> bool:
    """Whether `evaluate` can handle `node` with these names bound (plus builtins and slots)."""
    for child in ast.walk(node):
        if not isinstance(child, _NODES):
            return False
        if isinstance(child, ast.Name) and not (is_slot(child) or child.id in names or child.id in _FUNCTIONS):
            return False
        if isinstance(child, ast.Attribute) and child.attr not in _ATTRIBUTE_NAMES | set(MATH):
            return False
        if isinstance(child, ast.Call) and any(k.arg is None for k in child.keywords):
            return False  # **kwargs
        if isinstance(child, (ast.Call, ast.Tuple, ast.List, ast.Set)) and any(
            isinstance(a, ast.Starred) for a in getattr(child, "args", getattr(child, "elts", []))
        ):
            return False
    return True


class Evaluator:
    """One evaluation: `names` are the test's own bindings, `observe(i)` the i-th call's value."""

    def __init__(
        self,
        names: Mapping[str, Any],
        observe: Callable[[int], Any],
        rel_tol: float = DEFAULT_REL_TOL,
        abs_tol: float = DEFAULT_ABS_TOL,
    ) -> None:
        self.names = names
        self.observe = observe
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol
        self.cheats: list[Opaque] = []  # objects with the candidate's own __eq__ held against a test's value

    def evaluate(self, node: ast.expr) -> Any:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise Unjudgeable(f"unsupported expression {type(node).__name__}")
        return _bounded(method(node))

    def truth(self, node: ast.expr) -> bool:
        return _truth(self.evaluate(node))

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if is_slot(node):
            return self.observe(int(node.id[len(OBSERVATION) :]))
        if node.id in self.names:
            return self.names[node.id]
        if node.id in _FUNCTIONS:
            return _FUNCTIONS[node.id]
        raise Unjudgeable(f"name {node.id!r} is not known here")

    def _Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.evaluate(e) for e in node.elts)

    def _List(self, node: ast.List) -> Any:
        return [self.evaluate(e) for e in node.elts]

    def _Set(self, node: ast.Set) -> Any:
        return {_hashable(self.evaluate(e)) for e in node.elts}

    def _Dict(self, node: ast.Dict) -> Any:
        if any(k is None for k in node.keys):
            raise Unjudgeable("dict unpacking")
        return {_hashable(self.evaluate(k)): self.evaluate(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        if isinstance(node.op, ast.Not):
            return not self.truth(node.operand)
        value = _plain(self.evaluate(node.operand))
        return {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}[type(node.op)](value)

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = _plain(self.evaluate(node.left)), _plain(self.evaluate(node.right))
        if isinstance(node.op, ast.Mod) and isinstance(left, (str, bytes)):
            raise Unjudgeable("%-formatting")  # '%0999999999d' % 1 would build a gigabyte
        _guard_growth(node.op, left, right)
        return _BINARY[type(node.op)](left, right)

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for operand in node.values:
            value = self.evaluate(operand)
            if _truth(value) is isinstance(node.op, ast.Or):
                return value
        return value

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.evaluate(node.body) if self.truth(node.test) else self.evaluate(node.orelse)

    def _Compare(self, node: ast.Compare) -> bool:
        left_node, left = node.left, self.evaluate(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.evaluate(right_node)
            if not self._compare(op, left_node, left, right_node, right):
                return False
            left_node, left = right_node, right
        return True

    def _compare(self, op: ast.cmpop, left_node: ast.expr, left: Any, right_node: ast.expr, right: Any) -> bool:
        if isinstance(op, (ast.Is, ast.IsNot)):
            singletons = [v for v in (left, right) if v is None or v is True or v is False or v is Ellipsis]
            if not singletons:
                raise Unjudgeable("'is' between two computed values")
            return (left is right) is isinstance(op, ast.Is)
        if isinstance(op, ast.Eq):
            # an opaque value equals nothing (Python's identity rule for an object without a
            # data __eq__); one with the candidate's own __eq__ is a finding elsewhere
            return self._equal(left_node, left, right_node, right)
        if isinstance(op, ast.NotEq):  # exactly Python's: a tolerance would make != stricter
            return not values_equal(left, right, 0.0, 0.0)
        return bool(_ORDER[type(op)](_plain(left), _plain(right)))

    def _equal(self, left_node: ast.expr, left: Any, right_node: ast.expr, right: Any) -> bool:
        """Python's ==, with float tolerance where the expected side (the one the candidate
        did not produce) is a float."""
        left_observed, right_observed = has_slot(left_node), has_slot(right_node)
        if left_observed and right_observed and (_opaque_inside(left, 0) or _opaque_inside(right, 0)):
            raise NotData("two of the candidate's objects compared: its own __eq__ decides, in the isolated harness")
        cheat = find_custom_eq(left) or find_custom_eq(right)
        if cheat is not None:
            self.cheats.append(cheat)  # never the candidate's __eq__ against a test's value
            return False
        if left_observed and not right_observed:
            return values_equal(left, right, self.rel_tol, self.abs_tol)
        if right_observed and not left_observed:
            return values_equal(right, left, self.rel_tol, self.abs_tol)
        return values_equal(left, right, 0.0, 0.0)  # Python's ==, with the codec's size guards

    def _Subscript(self, node: ast.Subscript) -> Any:
        value = _plain(self.evaluate(node.value))
        index = self._index(node.slice)
        if type(value) not in (str, bytes, list, tuple, dict, range) and not _is_value_type(value):
            raise Unjudgeable(f"cannot index a {type(value).__name__}")
        return value[index]

    def _index(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            parts = [None if p is None else _plain(self.evaluate(p)) for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        return _hashable(self.evaluate(node))

    def _Attribute(self, node: ast.Attribute) -> Any:
        owner = self.evaluate(node.value)
        if owner is math:
            if node.attr in MATH:
                return MATH[node.attr]
            raise Unjudgeable(f"math.{node.attr} is not available here")
        if isinstance(owner, type) and owner in _METHODS and node.attr in _METHODS[owner]:
            return getattr(owner, node.attr)  # e.g. key=str.lower
        _plain(owner)
        kind = type(owner)
        fields = _namedtuple_fields(owner)
        if node.attr in _METHODS.get(kind, ()) or (fields is not None and node.attr in fields):
            return getattr(owner, node.attr)
        if _is_value_type(owner) and node.attr in _ATTRIBUTE_NAMES and not node.attr.startswith("_"):
            return getattr(owner, node.attr)
        raise Unjudgeable(f"attribute {node.attr!r} of a {kind.__name__}")

    def _Call(self, node: ast.Call) -> Any:
        function = self.evaluate(node.func)
        if not _callable_here(function):
            raise Unjudgeable("calls only known pure functions")
        args = [_plain(self.evaluate(a)) for a in node.args]
        kwargs = {k.arg: _plain(self.evaluate(k.value)) for k in node.keywords if k.arg is not None}
        _guard_call(function, args, kwargs)
        result = function(*args, **kwargs)
        if isinstance(result, (reversed, enumerate, zip)):
            result = list(result)  # materialised here: iterators do not outlive one call
        return result


def _callable_here(function: Any) -> bool:
    if any(function is f for f in _FUNCTIONS.values()) or any(function is f for f in MATH.values()):
        return True
    owner = getattr(function, "__self__", None)
    name = getattr(function, "__name__", "")
    if owner is not None and owner is not math:
        kind = owner if isinstance(owner, type) else type(owner)
        return name in _METHODS.get(kind, ()) or (_is_value_type(owner) and name in _ATTRIBUTE_NAMES)
    # unbound methods of plain types (key=str.lower)
    return any(getattr(kind, name, None) is function for kind, names in _METHODS.items() if name in names)


def _guard_call(function: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Arguments that would make a pure function build or loop over something huge."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, range) and len(value) > MAX_ITEMS:
            raise Unjudgeable("range too long")
        if isinstance(value, int) and value > MAX_ITEMS and (function is bytes or hasattr(function, "__self__")):
            raise Unjudgeable("argument too large")  # bytes(10**9), 'x'.zfill(10**9)
    if function is type and len(args) != 1:
        raise Unjudgeable("type() with more than one argument")
    if getattr(function, "__name__", "") == "replace" and isinstance(getattr(function, "__self__", None), str):
        text, (old, new) = function.__self__, [*args, "", ""][:2]
        if isinstance(old, str) and isinstance(new, str):
            grows = max(len(new) - len(old), 0) * (text.count(old) if old else len(text) + 1)
            if len(text) + grows > MAX_ITEMS:
                raise Unjudgeable("replacement too large")


def _is_value_type(value: Any) -> bool:
    """Standard-library value types the codec decodes (Counter, Fraction, datetime...)."""
    module = type(value).__module__
    return module in ("collections", "fractions", "decimal", "datetime") or _namedtuple_fields(value) is not None


def _namedtuple_fields(value: Any) -> tuple[str, ...] | None:
    fields = getattr(type(value), "_fields", None)
    return fields if isinstance(value, tuple) and isinstance(fields, tuple) else None


def _plain(value: Any) -> Any:
    """Values that cannot be judged (opaque ones, at any depth) stop the evaluation."""
    if _opaque_inside(value, 0):
        raise NotData("the candidate returned a value that is not plain data")
    return value


def _opaque_inside(value: Any, depth: int) -> bool:
    if isinstance(value, Opaque):
        return True
    if depth > 64:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_opaque_inside(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_opaque_inside(k, depth + 1) or _opaque_inside(v, depth + 1) for k, v in value.items())
    return False


def _truth(value: Any) -> bool:
    return bool(_plain(value))


def _hashable(value: Any) -> Any:
    _plain(value)
    try:
        hash(value)
    except TypeError:
        raise Unjudgeable("unhashable value") from None
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, range)) else 1


def _guard_growth(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse operations whose result would be huge (a candidate's value times a test's int)."""
    if isinstance(op, ast.Mult):
        for seq, count in ((left, right), (right, left)):
            if isinstance(count, int) and _size(seq) * max(count, 0) > MAX_ITEMS and not isinstance(seq, (int, float)):
                raise Unjudgeable("sequence repetition too large")
    if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
        if right > 0 and abs(left) > 1 and left.bit_length() * right > _MAX_POW_BITS:
            raise Unjudgeable("power too large")
    if isinstance(op, ast.LShift) and isinstance(right, int) and right > _MAX_POW_BITS:
        raise Unjudgeable("shift too large")
    if isinstance(op, ast.Add) and _size(left) + _size(right) > MAX_ITEMS:
        raise Unjudgeable("concatenation too large")


def _bounded(value: Any) -> Any:
    if isinstance(value, (str, bytes, list, tuple)) and len(value) > MAX_ITEMS:
        raise Unjudgeable("value too large")
    return value
