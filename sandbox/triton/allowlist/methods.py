"""Method calls, by what they are called on.

A tensor may be viewed, laid out, cast, copied and measured (TENSOR_METHODS); reading
its values (`.item()`, `.tolist()`) or computing with it is reported. A method of a class
defined here is analysed with its arguments; a torch nn module is never run. Local lists
and dicts may be built up; module-level ones and those held in `self` may not be written
from forward.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist.args import Args
from sandbox.triton.allowlist.module import is_static
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import (
    CONTAINER_MUTATORS,
    CONTAINER_READERS,
    CTX_METHODS,
    NN_MODULE_API,
    SCALAR_METHODS,
    TENSOR_COMPUTE_METHODS,
    TENSOR_METHODS,
    VALUE_READS,
    Context,
)
from sandbox.triton.allowlist.targets import written_state
from sandbox.triton.allowlist.values import (
    REJECTED,
    SCALAR,
    SHAPE,
    TENSOR,
    TENSORS,
    Kind,
    Value,
    element,
    holds_tensor,
    join,
    sequence,
    with_origin,
)

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_RESULTS = {"tensor": TENSOR, "tensors": TENSORS, "scalar": SCALAR, "shape": SHAPE}
_ALLOCATIONS = frozenset({"new_empty", "new_zeros", "new_ones", "new_full"})
_COMPUTE = "computes with torch instead of a Triton kernel"


def method_call(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    handler = _BY_KIND.get(base.kind)
    if base.kind is Kind.REJECTED:
        return REJECTED
    if handler is None:
        return an.reject(node, f"calls .{name} of {base}")
    return handler(an, scope, node, base, name, args)


def _tensor(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    if name in VALUE_READS:
        return an.reject(node, f"{_COMPUTE} (reads tensor values into Python with .{name}())", Code.TORCH_COMPUTE)
    if name in TENSOR_METHODS:
        result, where = TENSOR_METHODS[name]
        if scope.context not in where:
            return an.reject(node, f"calls .{name}() on a tensor, which only __init__ may (to build parameters)")
        if name.endswith("_") and written_state(an, scope, base, node):
            return REJECTED
        value = SCALAR if result == "shape" and (args.positional or args.keywords) else _RESULTS[result]
        return with_origin(value, base.origin) if value is TENSOR and name not in _ALLOCATIONS else value
    if name in TENSOR_COMPUTE_METHODS:
        return an.reject(node, f"{_COMPUTE} (tensor method .{name})", Code.TORCH_COMPUTE)
    return an.reject(node, f"calls tensor method .{name}, which is not on the allow-list")


def _instance(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    cls = an.module.classes[base.name]
    found = an.module.method(cls, "forward" if name == "__call__" else name)
    if found is not None:
        owner, func = found
        return an.run_function(func, args, scope.context, owner=owner, bound=None if is_static(func) else base)
    if name in ("register_buffer", "register_parameter") and scope.context is Context.SETUP:
        key = node.args[0] if node.args else None
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            cls.attrs[key.value] = Value(Kind.TENSOR, origin="self")
            return SCALAR
    if name in NN_MODULE_API:
        return an.reject(node, f"calls nn.Module.{name}")
    return an.reject(node, f"calls {base.name}.{name}, which is not defined here")


def _class(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    cls = an.module.classes[base.name]
    if name == "apply" and cls.kind == "function":
        found = an.module.method(cls, "forward")
        if found is None:
            return an.reject(node, f"{cls.name} has no forward")
        owner, func = found
        with_ctx = Args((Value(Kind.CTX), *args.positional), args.star, args.keywords, args.double_star)
        return an.run_function(func, with_ctx, scope.context, owner=owner)
    found = an.module.method(cls, name)
    if found is None:
        return an.reject(node, f"calls {cls.name}.{name}")
    owner, func = found
    this = args.positional[0] if name == "__init__" and args.positional else None
    rest = Args(args.positional[1:], args.star, args.keywords, args.double_star) if this is not None else args
    return an.run_function(func, rest, scope.context, owner=owner, bound=this)


def _nn(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    if name in ("forward", "__call__"):
        return an.reject(node, f"{_COMPUTE} (runs a torch nn module)", Code.TORCH_COMPUTE)
    return an.reject(node, f"calls .{name} of a torch nn module")


_COMPARING = frozenset({"index", "count", "remove", "sort"})  # compare elements: tensor values


def _container(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    item = element(base, base.item)
    if name in _COMPARING and (holds_tensor(base) or any(map(holds_tensor, args.values()))):
        return an.reject(node, f"{_COMPUTE} (.{name} compares tensors by value)", Code.TORCH_COMPUTE)
    if name in CONTAINER_MUTATORS:
        if written_state(an, scope, base, node):
            return REJECTED
        if args.positional and isinstance(node.func, ast.Attribute):
            added = args.positional[-1]
            if name == "extend":
                added = added.item or SCALAR if added.kind is Kind.SEQ else added
            _grow(an, scope, node.func.value, Value(base.kind, item=join(item, added), origin=base.origin))
        return item if name in ("pop", "popitem", "setdefault") else SCALAR
    if name in CONTAINER_READERS:
        if name == "items":
            return Value(Kind.SEQ, item=sequence([SCALAR, item]))
        if name == "values":
            return Value(Kind.SEQ, item=item)
        if name == "keys":
            return Value(Kind.SEQ, item=SCALAR)
        if name == "copy":
            return Value(base.kind, item=item)
        return item if name == "get" else SCALAR
    return an.reject(node, f"calls .{name} of {base}")


def _grow(an: Walker, scope: Scope, receiver: ast.AST, grown: Value) -> None:
    """A list built up with tensors (or modules) holds tensors from then on."""
    if isinstance(receiver, ast.Name) and receiver.id in scope.env:
        scope.env[receiver.id] = grown
    elif isinstance(receiver, ast.Attribute) and scope.this is not None and scope.this.kind is Kind.INSTANCE:
        if isinstance(receiver.value, ast.Name) and scope.env.get(receiver.value.id) == scope.this:
            an.module.classes[scope.this.name].attrs[receiver.attr] = grown


def _scalar(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    if any(map(holds_tensor, args.values())):
        return an.reject(node, f"{_COMPUTE} (formats tensor values with .{name})", Code.TORCH_COMPUTE)
    if name in SCALAR_METHODS:
        return SCALAR
    return an.reject(node, f"calls .{name} of {base}")


def _ctx(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    if name in CTX_METHODS:
        return SCALAR
    return an.reject(node, f"calls ctx.{name}")


def _super(an: Walker, scope: Scope, node: ast.Call, base: Value, name: str, args: Args) -> Value:
    """super().<name>(...): the next class defined here that has it, else nn.Module's own __init__."""
    cls = an.module.classes[base.name]
    for parent in cls.local_bases:
        found = an.module.method(an.module.classes[parent], name)
        if found is not None:
            owner, func = found
            return an.run_function(func, args, scope.context, owner=owner, bound=base.item)
    if name == "__init__" and scope.context is Context.SETUP:
        return SCALAR
    return an.reject(node, f"calls super().{name}, which no class defined here has")


_BY_KIND = {
    Kind.TENSOR: _tensor,
    Kind.INSTANCE: _instance,
    Kind.CLASS: _class,
    Kind.NN: _nn,
    Kind.SEQ: _container,
    Kind.DICT: _container,
    Kind.SCALAR: _scalar,
    Kind.CTX: _ctx,
    Kind.SUPER: _super,
}
