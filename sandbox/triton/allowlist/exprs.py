"""Host expressions: the kind of each value, and the operations allowed on each kind.

Python arithmetic on scalars, shapes and block sizes is allowed; arithmetic, comparison,
truth tests or formatting of a tensor is torch computing on the host and is reported.
Anything not handled here (await, yield, a lambda that is not a kernel grid) is rejected.
"""

from __future__ import annotations

import ast
import builtins
import itertools
from typing import TYPE_CHECKING

from sandbox.triton.allowlist import attributes, calls, targets
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import LIBRARY_CONSTANTS, Context, forbidden_reason
from sandbox.triton.allowlist.values import (
    REJECTED,
    SCALAR,
    TENSOR,
    Kind,
    Value,
    element,
    holds_tensor,
    join,
    join_all,
    sequence,
)

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_BUILTIN_NAMES = frozenset(dir(builtins))
_DATA_KINDS = frozenset(
    {
        Kind.TENSOR,
        Kind.SCALAR,
        Kind.SEQ,
        Kind.DICT,
        Kind.INSTANCE,
        Kind.NN,
        Kind.PROPS,
        Kind.EXC,
        Kind.CTX,
        Kind.KERNEL,
        Kind.GRID,
        Kind.REJECTED,
    }
)


def evaluate(an: Walker, scope: Scope, node: ast.AST) -> Value:
    handler = _HANDLERS.get(type(node))
    if handler is None:
        return an.reject(node, f"uses {type(node).__name__}, which host code here may not")
    return handler(an, scope, node)


def as_data(an: Walker, node: ast.AST, value: Value) -> Value:
    """A value about to be stored, passed or returned: functions and library objects may not be."""
    if value.kind in _DATA_KINDS:
        return value
    if value.kind is Kind.LIB:
        if value.name in LIBRARY_CONSTANTS:
            return SCALAR
        why = forbidden_reason(value.name)
        if why:
            return an.reject(node, f"uses {value.name}: {why}", Code.FORBIDDEN)
        if value.name.startswith(("torch.", "numpy.")) and value.name.rsplit(".", 1)[-1][:1].islower():
            return an.reject(node, f"computes with torch (passes {value.name} around)", Code.TORCH_COMPUTE)
        return an.reject(node, f"passes {value.name} around as a value")
    if value.kind is Kind.MIXED:
        return an.reject(node, "holds values of several kinds the checker cannot tell apart")
    return an.reject(node, f"passes {value} around as a value: calls through values are not followed")


def truth(an: Walker, scope: Scope, node: ast.AST) -> Value:
    """A condition: a tensor's truth value is its data, read on the host."""
    value = an.data(scope, node)
    if value.kind is Kind.TENSOR:
        return an.reject(
            node, "computes with torch instead of a Triton kernel (branches on a tensor)", Code.TORCH_COMPUTE
        )
    return value


# ---- names ------------------------------------------------------------------------------


def _name(an: Walker, scope: Scope, node: ast.Name) -> Value:
    name = node.id
    if name in scope.env:
        return scope.env[name]
    borrowed = calls.reference(an, scope, node, node)
    if borrowed is not None:
        return borrowed
    module = an.module
    if name in module.constants:
        return module.constants[name]
    if name in module.kernels:
        return Value(Kind.KERNEL, name)
    if name in module.functions:
        return Value(Kind.FUNC, name)
    if name in module.classes:
        return Value(Kind.CLASS, name)
    if name in module.imports:
        return Value(Kind.LIB, module.imports[name])
    if name.startswith("__") and name.endswith("__") and name != "__import__":
        return an.reject(node, f"reads {name}: the module's internals", Code.INTROSPECTION)
    if name in _BUILTIN_NAMES:
        return Value(Kind.BUILTIN, name)
    return an.reject(node, f"uses {name}, which is neither defined here nor allowed")


def _constant(an: Walker, scope: Scope, node: ast.Constant) -> Value:
    return SCALAR


def _attribute(an: Walker, scope: Scope, node: ast.Attribute) -> Value:
    return attributes.attribute(an, scope, node, evaluate(an, scope, node.value), node.attr)


def _subscript(an: Walker, scope: Scope, node: ast.Subscript) -> Value:
    return attributes.subscript(an, scope, node, evaluate(an, scope, node.value))


# ---- operators --------------------------------------------------------------------------


def _binop(an: Walker, scope: Scope, node: ast.BinOp) -> Value:
    left, right = an.data(scope, node.left), an.data(scope, node.right)
    return binary(an, scope, node, node.op, left, right)


def binary(an: Walker, scope: Scope, node: ast.AST, op: ast.operator, left: Value, right: Value) -> Value:
    kinds = {left.kind, right.kind}
    if Kind.REJECTED in kinds:
        return REJECTED
    if isinstance(op, ast.MatMult):
        return an.reject(node, "computes with torch instead of a Triton kernel (@ operator)", Code.TORCH_COMPUTE)
    if Kind.TENSOR in kinds:
        if scope.context is Context.SETUP and kinds <= {Kind.TENSOR, Kind.SCALAR} and kinds != {Kind.TENSOR}:
            return TENSOR  # scaling a parameter while building it: `torch.randn(n) * 0.02`
        return an.reject(
            node, "computes with torch instead of a Triton kernel (arithmetic on tensors)", Code.TORCH_COMPUTE
        )
    if kinds == {Kind.SCALAR}:
        return SCALAR
    if left.kind is Kind.SEQ and isinstance(op, ast.Add) and right.kind is Kind.SEQ:
        return sequence([*(left.items or (left.item or SCALAR,)), *(right.items or (right.item or SCALAR,))])
    if isinstance(op, ast.Mult) and kinds == {Kind.SEQ, Kind.SCALAR}:
        seq = left if left.kind is Kind.SEQ else right
        return Value(Kind.SEQ, item=seq.item)
    if isinstance(op, ast.Mod) and left.kind is Kind.SCALAR:
        if holds_tensor(right):
            return an.reject(node, "formats a tensor's values on the host", Code.TORCH_COMPUTE)
        return SCALAR  # "%d x %d" % shape
    return an.reject(node, f"applies {type(op).__name__} to {left} and {right}")


def _unaryop(an: Walker, scope: Scope, node: ast.UnaryOp) -> Value:
    if isinstance(node.op, ast.Not):
        truth(an, scope, node.operand)
        return SCALAR
    value = an.data(scope, node.operand)
    if value.kind is Kind.TENSOR:
        if scope.context is Context.SETUP:
            return TENSOR
        return an.reject(
            node, "computes with torch instead of a Triton kernel (unary operator on a tensor)", Code.TORCH_COMPUTE
        )
    if value.kind in (Kind.SCALAR, Kind.REJECTED):
        return value
    return an.reject(node, f"applies {type(node.op).__name__} to {value}")


def _boolop(an: Walker, scope: Scope, node: ast.BoolOp) -> Value:
    return join_all([truth(an, scope, value) for value in node.values])


def _compare(an: Walker, scope: Scope, node: ast.Compare) -> Value:
    sides = [an.data(scope, side) for side in (node.left, *node.comparators)]
    if any(s.kind is Kind.REJECTED for s in sides):
        return REJECTED
    for op, (left, right) in zip(node.ops, itertools.pairwise(sides), strict=True):
        if isinstance(op, (ast.Is, ast.IsNot)):
            continue  # identity: no data read
        if holds_tensor(left) or holds_tensor(right):  # [t] == [u] and 1 in [t] compare values too
            return an.reject(
                node,
                "computes with torch instead of a Triton kernel (elementwise comparison on tensors)",
                Code.TORCH_COMPUTE,
            )
        if not {left.kind, right.kind} <= {Kind.SCALAR, Kind.SEQ, Kind.DICT}:
            return an.reject(node, f"compares {left} with {right}")
    return SCALAR


def _ifexp(an: Walker, scope: Scope, node: ast.IfExp) -> Value:
    truth(an, scope, node.test)
    return join(an.data(scope, node.body), an.data(scope, node.orelse))


# ---- displays and comprehensions ------------------------------------------------------


def elements(an: Walker, scope: Scope, nodes: list[ast.expr]) -> list[Value]:
    out = []
    for part in nodes:
        if isinstance(part, ast.Starred):
            inner = an.data(scope, part.value)
            out.append(inner.item or SCALAR if inner.kind is Kind.SEQ else _not_iterable(an, part, inner))
        else:
            out.append(an.data(scope, part))
    return out


def _not_iterable(an: Walker, node: ast.AST, value: Value) -> Value:
    if value.kind is Kind.REJECTED:
        return REJECTED
    if value.kind is Kind.TENSOR:
        return an.reject(node, "iterates over a tensor's values on the host", Code.TORCH_COMPUTE)
    return an.reject(node, f"iterates over {value}")


def _display(an: Walker, scope: Scope, node: ast.Tuple | ast.List | ast.Set) -> Value:
    return sequence(elements(an, scope, node.elts))


def _dict(an: Walker, scope: Scope, node: ast.Dict) -> Value:
    values = []
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:  # {**other}
            other = an.data(scope, value)
            values.append(other.item or SCALAR if other.kind is Kind.DICT else _not_iterable(an, value, other))
            continue
        an.data(scope, key)
        values.append(an.data(scope, value))
    return Value(Kind.DICT, item=join_all(values) if values else SCALAR)


def iterate(an: Walker, scope: Scope, node: ast.AST) -> Value:
    """What a `for` over this expression binds at each step."""
    value = an.data(scope, node)
    if value.kind is Kind.SEQ:
        return element(value, value.item)
    if value.kind is Kind.DICT:
        return SCALAR  # its keys
    if value.kind is Kind.NN:
        return value  # a ModuleList of torch modules: running one is still reported
    return _not_iterable(an, node, value)


def _comprehension(
    an: Walker, scope: Scope, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
) -> Value:
    inner = scope.child()
    for generator in node.generators:
        if generator.is_async:
            return an.reject(node, "uses an async comprehension")
        targets.bind(an, inner, generator.target, iterate(an, inner, generator.iter), generator)
        for condition in generator.ifs:
            truth(an, inner, condition)
    if isinstance(node, ast.DictComp):
        an.data(inner, node.key)
        return Value(Kind.DICT, item=an.data(inner, node.value))
    return Value(Kind.SEQ, item=an.data(inner, node.elt))


def _lambda(an: Walker, scope: Scope, node: ast.Lambda) -> Value:
    return calls.grid_lambda(an, scope, node)


def _joined(an: Walker, scope: Scope, node: ast.JoinedStr) -> Value:
    for part in node.values:
        if isinstance(part, ast.FormattedValue):
            value = an.data(scope, part.value)
            if holds_tensor(value):
                an.reject(part, "formats a tensor's values on the host", Code.TORCH_COMPUTE)
            if part.format_spec is not None:
                evaluate(an, scope, part.format_spec)
    return SCALAR


def _slice(an: Walker, scope: Scope, node: ast.Slice) -> Value:
    for part in (node.lower, node.upper, node.step):
        if part is not None and an.data(scope, part).kind is Kind.TENSOR:
            an.reject(part, "slices with a tensor's value", Code.TORCH_COMPUTE)
    return SCALAR


def _named(an: Walker, scope: Scope, node: ast.NamedExpr) -> Value:
    value = an.data(scope, node.value)
    scope.env[node.target.id] = value
    return value


def _starred(an: Walker, scope: Scope, node: ast.Starred) -> Value:
    return an.data(scope, node.value)


_HANDLERS = {
    ast.Name: _name,
    ast.Constant: _constant,
    ast.Attribute: _attribute,
    ast.Subscript: _subscript,
    ast.Call: calls.call,
    ast.BinOp: _binop,
    ast.UnaryOp: _unaryop,
    ast.BoolOp: _boolop,
    ast.Compare: _compare,
    ast.IfExp: _ifexp,
    ast.Tuple: _display,
    ast.List: _display,
    ast.Set: _display,
    ast.Dict: _dict,
    ast.ListComp: _comprehension,
    ast.SetComp: _comprehension,
    ast.GeneratorExp: _comprehension,
    ast.DictComp: _comprehension,
    ast.Lambda: _lambda,
    ast.JoinedStr: _joined,
    ast.Slice: _slice,
    ast.NamedExpr: _named,
    ast.Starred: _starred,
}
