"""Reading attributes and items: what each kind of value exposes.

Dunder attributes and frame attributes are introspection wherever they appear (the
way to the harness's frames, globals and the heap), except `__init__` through `super()`.
A tensor exposes its metadata and views; an nn module held for its weights exposes
those and its configuration; a kernel is only ever subscripted with its grid.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist import calls
from sandbox.triton.allowlist.indexing import tensor_index
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import (
    CONTAINER_MUTATORS,
    CONTAINER_READERS,
    CTX_METHODS,
    FRAME_ATTRIBUTES,
    MODULE_BUILTIN_ATTRIBUTES,
    NN_CONFIG_ATTRIBUTES,
    NN_MODULE_API,
    NN_TENSOR_ATTRIBUTES,
    OPERATOR_DUNDERS,
    SCALAR_ATTRIBUTES,
    SCALAR_METHODS,
    TENSOR_ATTRIBUTES,
    TENSOR_COMPUTE_METHODS,
    TENSOR_METHODS,
    VALUE_READS,
)
from sandbox.triton.allowlist.values import (
    REJECTED,
    SCALAR,
    SHAPE,
    TENSOR,
    TENSORS,
    Kind,
    Value,
    element,
    with_origin,
)

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_RESULTS = {"tensor": TENSOR, "scalar": SCALAR, "shape": SHAPE, "tensors": TENSORS}
_CTX_ATTRIBUTES = {"saved_tensors": TENSORS, "needs_input_grad": SHAPE}
_TENSOR_CALLABLES = frozenset({*TENSOR_METHODS, *TENSOR_COMPUTE_METHODS, *VALUE_READS})
# What may be called on each kind (judged by methods.py when called).
_METHODS = {
    Kind.TENSOR: _TENSOR_CALLABLES,
    Kind.SEQ: CONTAINER_MUTATORS | CONTAINER_READERS,
    Kind.DICT: CONTAINER_MUTATORS | CONTAINER_READERS,
    Kind.SCALAR: SCALAR_METHODS,
    Kind.CTX: CTX_METHODS,
    Kind.NN: frozenset({"forward", "__call__"}),
}


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def attribute(an: Walker, scope: Scope, node: ast.Attribute, base: Value, name: str) -> Value:
    if base.kind is Kind.REJECTED:
        return REJECTED
    if name in FRAME_ATTRIBUTES:
        return an.reject(node, f"reads .{name}: frames and code objects lead to the harness", Code.INTROSPECTION)
    if _dunder(name):
        return _dunder_attribute(an, node, base, name)
    if base.kind is Kind.LIB:
        return Value(Kind.LIB, f"{base.name}.{name}")
    if base.kind is Kind.TENSOR and name in TENSOR_ATTRIBUTES:
        return with_origin(_RESULTS[TENSOR_ATTRIBUTES[name]], base.origin if name in ("T", "mT", "data") else "")
    if base.kind is Kind.INSTANCE:
        return instance_attribute(an, node, base, name)
    if base.kind is Kind.CLASS:
        return _class_attribute(an, node, base, name)
    if base.kind is Kind.NN:
        if name in NN_TENSOR_ATTRIBUTES:
            return Value(Kind.TENSOR, origin="self")
        if name in NN_CONFIG_ATTRIBUTES:
            return SCALAR
    if base.kind is Kind.PROPS:
        return SCALAR
    if base.kind is Kind.CTX and name in _CTX_ATTRIBUTES:
        return _CTX_ATTRIBUTES[name]
    if base.kind is Kind.SCALAR and name in SCALAR_ATTRIBUTES:
        return SCALAR
    if base.kind is Kind.SUPER or name in _METHODS.get(base.kind, ()):
        return Value(Kind.METHOD, name, item=base)
    return an.reject(node, f"reads .{name} of {base}, which is not on the allow-list")


def _dunder_attribute(an: Walker, node: ast.Attribute, base: Value, name: str) -> Value:
    if name == "__init__" and base.kind is Kind.LIB and base.name == "torch.nn.Module":
        return Value(Kind.LIB, "torch.nn.Module.__init__")
    if name == "__init__" and (
        base.kind is Kind.SUPER or (base.kind is Kind.CLASS and an.module.classes[base.name].kind == "module")
    ):
        return Value(Kind.METHOD, name, item=base)
    if base.kind is Kind.TENSOR and name in OPERATOR_DUNDERS:
        return an.reject(
            node, f"computes with torch instead of a Triton kernel (tensor method .{name})", Code.TORCH_COMPUTE
        )
    return an.reject(
        node, f"reads .{name}: Python internals (the way to frames, globals and the heap)", Code.INTROSPECTION
    )


def instance_attribute(an: Walker, node: ast.AST, base: Value, name: str) -> Value:
    """`self.x`: what __init__ stored, a class constant, or a method (called, never passed)."""
    cls = an.module.classes[base.name]
    for owner in an.module.lineage(cls):
        if name in owner.attrs:
            return owner.attrs[name]
    for owner in an.module.lineage(cls):
        if name in owner.constants:
            return an.module.class_constants.get((owner.name, name), SCALAR)
    if an.module.method(cls, name) is not None or name in NN_MODULE_API:
        return Value(Kind.METHOD, name, item=base)  # nn.Module's own methods: judged when called
    if name in MODULE_BUILTIN_ATTRIBUTES:
        return SCALAR
    return an.reject(node, f"reads self.{name}, which __init__ never sets")


def _class_attribute(an: Walker, node: ast.AST, base: Value, name: str) -> Value:
    cls = an.module.classes[base.name]
    if name == "apply" and cls.kind == "function":
        return Value(Kind.METHOD, name, item=base)
    found = an.module.method(cls, name)
    if found is not None:
        return Value(Kind.METHOD, name, item=base)
    for owner in an.module.lineage(cls):
        if name in owner.constants:
            return an.module.class_constants.get((owner.name, name), SCALAR)
    return an.reject(node, f"reads {cls.name}.{name}")


# ---- items ------------------------------------------------------------------------------


def subscript(an: Walker, scope: Scope, node: ast.Subscript, base: Value) -> Value:
    if base.kind is Kind.REJECTED:
        an.evaluate(scope, node.slice)
        return REJECTED
    if base.kind is Kind.KERNEL:
        return calls.launcher(an, scope, node, base)
    if base.kind is Kind.TENSOR:
        tensor_index(an, scope, node.slice)
        return with_origin(TENSOR, base.origin)
    if base.kind is Kind.SEQ:
        return _sequence_item(an, scope, node, base)
    if base.kind is Kind.DICT:
        an.data(scope, node.slice)
        return element(base, base.item)
    if base.kind is Kind.NN:
        an.data(scope, node.slice)
        return base
    return an.reject(node, f"indexes {base}")


def _sequence_item(an: Walker, scope: Scope, node: ast.Subscript, base: Value) -> Value:
    if isinstance(node.slice, ast.Slice):
        an.evaluate(scope, node.slice)
        return Value(Kind.SEQ, item=base.item)  # a copy: writing it writes nothing shared
    index = an.data(scope, node.slice)
    if index.kind is Kind.TENSOR:
        return an.reject(node, "indexes a sequence with a tensor's value", Code.TORCH_COMPUTE)
    constant = node.slice.value if isinstance(node.slice, ast.Constant) else None
    if base.items is not None and isinstance(constant, int) and -len(base.items) <= constant < len(base.items):
        return element(base, base.items[constant])
    return element(base, base.item)
