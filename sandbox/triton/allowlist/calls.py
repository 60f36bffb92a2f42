"""Calls in host code: library functions, builtins, the module's own functions, kernel launches.

A library call is allowed when LIBRARY_CALLS names it for the context it runs in
(allocation in forward, parameter creation in `__init__`, `triton.Config` in decorators);
the rest are classified for the finding. A kernel runs only as `kernel[grid](...)`, with
a grid that is a tuple of Python ints or a lambda over `meta` computing one.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist import methods
from sandbox.triton.allowlist.args import Args
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import (
    ARRAY_LIBRARIES,
    CACHE_DECORATORS,
    COMPUTED_NAME_BUILTINS,
    EXCEPTIONS,
    FORBIDDEN_BUILTINS,
    HOST_BUILTINS,
    INTROSPECTION_BUILTINS,
    INTROSPECTION_MODULES,
    LIBRARY_CALLS,
    NN_INIT_PREFIX,
    NN_PREFIX,
    TORCH_COMPUTE_ROOTS,
    TYPE_NAMES,
    Context,
    forbidden_reason,
)
from sandbox.triton.allowlist.values import (
    REJECTED,
    SCALAR,
    SHAPE,
    TENSOR,
    TENSORS,
    Kind,
    Value,
    holds_tensor,
    join,
    join_all,
    sequence,
)

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_RAW_ARGUMENTS = frozenset({"isinstance", "super", *COMPUTED_NAME_BUILTINS, *INTROSPECTION_BUILTINS})
_RESULTS = {
    "tensor": TENSOR,
    "tensors": TENSORS,
    "scalar": SCALAR,
    "shape": SHAPE,
    "props": Value(Kind.PROPS),
    "context": Value(Kind.SCALAR, "context"),
}
_COMPUTE = "computes with torch instead of a Triton kernel"
_REFERENCE_HELPERS = frozenset({"get_inputs", "get_init_inputs"})
# Library calls returning Python values that take a tensor for its metadata only.
_METADATA = frozenset({"torch.is_tensor", "torch.is_floating_point", "torch.numel", "torch.cuda.device"})


def call(an: Walker, scope: Scope, node: ast.Call) -> Value:
    from_reference = reference(an, scope, node.func, node) if isinstance(node.func, ast.Name) else None
    callee = from_reference or an.evaluate(scope, node.func)
    raw = callee.kind is Kind.BUILTIN and callee.name in _RAW_ARGUMENTS
    return invoke(an, scope, node, callee, arguments(an, scope, node, raw=raw))


def reference(an: Walker, scope: Scope, name: ast.Name, evidence: ast.AST) -> Value | None:
    """The reference's Model, or its input builders called from the model: reported, or None."""
    if name.id in scope.env:
        return None
    if name.id == "Model":
        return an.reject(evidence, "uses the reference Model", Code.REFERENCE)
    if name.id in _REFERENCE_HELPERS and scope.context is not Context.IMPORT:
        return an.reject(evidence, f"reads {name.id} from forward", Code.REFERENCE)
    return None


def arguments(an: Walker, scope: Scope, node: ast.Call, *, raw: bool = False) -> Args:
    read = an.evaluate if raw else an.data
    positional: list[Value] = []
    star: Value | None = None
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            seq = an.data(scope, arg.value)
            item = seq.item or SCALAR if seq.kind is Kind.SEQ else _spread(an, arg, seq)
            star = item if star is None else join(star, item)
        else:
            positional.append(read(scope, arg))
    keywords: list[tuple[str, Value]] = []
    double: Value | None = None
    for keyword in node.keywords:
        value = an.data(scope, keyword.value)
        if keyword.arg is None:
            double = value.item or SCALAR if value.kind is Kind.DICT else _spread(an, keyword, value)
        else:
            keywords.append((keyword.arg, value))
    return Args(tuple(positional), star, tuple(keywords), double)


def _spread(an: Walker, node: ast.AST, value: Value) -> Value:
    if value.kind is Kind.REJECTED:
        return REJECTED
    return an.reject(node, f"spreads {value} into a call")


def invoke(an: Walker, scope: Scope, node: ast.Call, callee: Value, args: Args) -> Value:
    kind = callee.kind
    if kind is Kind.REJECTED:
        return REJECTED
    if kind is Kind.LIB:
        return library(an, scope, node, callee.name, args)
    if kind is Kind.BUILTIN:
        return builtin(an, scope, node, callee.name, args)
    if kind in (Kind.FUNC, Kind.CLASS, Kind.LAUNCHER) and scope.context is Context.IMPORT:
        return an.reject(node, f"runs {callee.name or callee} at import time")
    if kind is Kind.FUNC:
        return an.run_function(an.module.functions[callee.name], args, scope.context)
    if kind is Kind.CLASS:
        return instantiate(an, scope, node, callee.name, args)
    if kind is Kind.KERNEL:
        return an.reject(node, f"calls kernel {callee.name} without a grid: launch it as kernel[grid](...)")
    if kind is Kind.LAUNCHER:
        return _launch(an, scope, node, args)
    if kind is Kind.METHOD:
        return methods.method_call(an, scope, node, callee.item or REJECTED, callee.name, args)
    if kind is Kind.INSTANCE:
        return methods.method_call(an, scope, node, callee, "forward", args)
    if kind is Kind.NN:
        return an.reject(node, f"{_COMPUTE} (runs a torch nn module)", Code.TORCH_COMPUTE)
    return an.reject(node, f"calls {callee}")


# ---- library ----------------------------------------------------------------------------


def library(an: Walker, scope: Scope, node: ast.Call, path: str, args: Args) -> Value:
    why = forbidden_reason(path)
    if why:
        return an.reject(node, f"uses {path}: {why}", Code.FORBIDDEN)
    root = path.split(".")[0]
    if root in INTROSPECTION_MODULES:
        return an.reject(node, f"calls {path}: introspection", Code.INTROSPECTION)
    if path == "torch.nn.Module.__init__":
        return SCALAR
    if path in LIBRARY_CALLS:
        result, where = LIBRARY_CALLS[path]
        if scope.context not in where:
            return _misplaced(an, node, path, result, scope.context)
        if result in ("scalar", "shape", "props") and path not in _METADATA and any(map(holds_tensor, args.values())):
            return an.reject(node, f"{_COMPUTE} (reads tensor values into Python through {path})", Code.TORCH_COMPUTE)
        return _container(args) if result == "container" else _RESULTS[result]
    if path.startswith(NN_INIT_PREFIX) or (path.startswith(NN_PREFIX) and path.rsplit(".", 1)[-1][:1].isupper()):
        if scope.context is not Context.SETUP:
            an.reject(node, f"builds {path} outside __init__")
        return TENSOR if path.startswith(NN_INIT_PREFIX) else Value(Kind.NN)
    if any(path == c or path.startswith(c + ".") for c in CACHE_DECORATORS):
        return an.reject(node, f"uses {path}: can memoise outputs across calls instead of computing them", Code.CACHE)
    if root in ARRAY_LIBRARIES:
        return an.reject(node, f"computes with {root} instead of a Triton kernel ({path})", Code.TORCH_COMPUTE)
    if root == "torch" or path.startswith(tuple(TORCH_COMPUTE_ROOTS)):
        return an.reject(node, f"calls {path}, outside the allocation/view allow-list", Code.TORCH_COMPUTE)
    return an.reject(node, f"calls {path}, which is not on the allow-list")


def _misplaced(an: Walker, node: ast.AST, path: str, result: str, context: Context) -> Value:
    if context is Context.IMPORT:
        what = "builds a tensor at import time" if result in ("tensor", "tensors") else "runs at import time"
        return an.reject(node, f"{what} ({path})")
    if context is Context.FORWARD and result in ("tensor", "container"):
        return an.reject(node, f"calls {path}, which only __init__ may (to build parameters)")
    return an.reject(node, f"calls {path} outside a kernel decorator")


def _container(args: Args) -> Value:
    """nn.ModuleList([...]) of modules defined here stays a sequence of them; of torch modules, a torch module."""
    held = args.positional[0] if args.positional else None
    if held is not None and held.kind is Kind.SEQ and held.item is not None and held.item.kind is Kind.INSTANCE:
        return Value(Kind.SEQ, item=held.item, origin="self")
    return Value(Kind.NN)


# ---- builtins ---------------------------------------------------------------------------


def builtin(an: Walker, scope: Scope, node: ast.Call, name: str, args: Args) -> Value:
    if name in FORBIDDEN_BUILTINS:
        return an.reject(node, f"uses {name}: runs code hidden from these checks", Code.FORBIDDEN)
    if name in INTROSPECTION_BUILTINS:
        return an.reject(node, f"calls {name}(): reads namespaces behind the code's back", Code.INTROSPECTION)
    if name in COMPUTED_NAME_BUILTINS:
        return _computed_name(an, node, name, args)
    if name in EXCEPTIONS:
        return Value(Kind.EXC, name)
    if name not in HOST_BUILTINS:
        return an.reject(node, f"calls {name}, which is not on the allow-list")
    return _BUILTINS[name](an, scope, node, args)


def _computed_name(an: Walker, node: ast.Call, name: str, args: Args) -> Value:
    base = args.positional[0] if args.positional else REJECTED
    if name == "setattr" and base.kind is Kind.LIB:
        return an.reject(node, f"patches {base.name} for everyone (setattr)", Code.FORBIDDEN)
    an.reject(node, f"uses {name}: attributes named at run time are not followed")
    attr = node.args[1] if len(node.args) > 1 else None
    if name == "getattr" and base.kind is Kind.LIB and isinstance(attr, ast.Constant) and isinstance(attr.value, str):
        return Value(Kind.LIB, f"{base.name}.{attr.value}")  # judged where it is used
    return REJECTED


def _items(args: Args) -> list[Value]:
    values = list(args.positional)
    if len(values) == 1 and values[0].kind is Kind.SEQ and args.star is None:
        return [values[0].item or SCALAR]
    return [*values, *([args.star] if args.star is not None else [])]


def _over_scalars(name: str, result: Value) -> object:
    def check(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
        items = _items(args)
        if any(v.kind is Kind.TENSOR for v in items):
            return an.reject(node, f"{_COMPUTE} (builtin {name} over tensors)", Code.TORCH_COMPUTE)
        if any(v.kind is Kind.REJECTED for v in items):
            return REJECTED
        if any(v.kind is not Kind.SCALAR for v in items):
            return an.reject(node, f"calls {name} on {join_all(items)}")
        return result

    return check


def _collect(name: str) -> object:
    def check(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
        if not args.positional:
            return Value(Kind.SEQ, item=SCALAR)
        held = args.positional[0]
        if name == "sorted" and holds_tensor(held):
            return an.reject(node, f"{_COMPUTE} (sorts tensors by their values)", Code.TORCH_COMPUTE)
        if held.kind is Kind.SEQ:
            return Value(Kind.SEQ, item=held.item)
        if held.kind is Kind.DICT:
            return Value(Kind.SEQ, item=SCALAR)
        if held.kind is Kind.TENSOR:
            return an.reject(node, f"iterates over a tensor's values on the host ({name})", Code.TORCH_COMPUTE)
        return REJECTED if held.kind is Kind.REJECTED else an.reject(node, f"calls {name} on {held}")

    return check


def _len(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    return SCALAR


def _dict(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    values = [v for _, v in args.keywords] or [SCALAR]
    return Value(Kind.DICT, item=join_all(values))


def _enumerate(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    held = args.positional[0] if args.positional else REJECTED
    if held.kind is not Kind.SEQ:
        return REJECTED if held.kind is Kind.REJECTED else an.reject(node, f"enumerates {held}")
    return Value(Kind.SEQ, item=sequence([SCALAR, held.item or SCALAR]))


def _zip(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    if any(v.kind is Kind.REJECTED for v in args.positional):
        return REJECTED
    if any(v.kind is not Kind.SEQ for v in args.positional):
        return an.reject(node, "zips something other than sequences")
    return Value(Kind.SEQ, item=sequence([v.item or SCALAR for v in args.positional]))


def _isinstance(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    if len(node.args) == 2 and _type_spec(an, scope, node.args[1]):
        return SCALAR
    return an.reject(node, "isinstance with a type the checker does not know")


def _type_spec(an: Walker, scope: Scope, node: ast.AST) -> bool:
    if isinstance(node, ast.Tuple):
        return all(_type_spec(an, scope, element) for element in node.elts)
    value = an.evaluate(scope, node)
    return (
        (value.kind is Kind.BUILTIN and value.name in ("int", "float", "bool", "str", "tuple", "list", "dict"))
        or (value.kind is Kind.LIB and value.name in TYPE_NAMES)
        or value.kind is Kind.CLASS
    )


def _super(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    if scope.owner is None or scope.this is None:
        return an.reject(node, "calls super() outside a method")
    return Value(Kind.SUPER, scope.owner.name, item=scope.this)


_BUILTINS = {
    "range": _over_scalars("range", Value(Kind.SEQ, item=SCALAR)),
    "len": _len,
    "min": _over_scalars("min", SCALAR),
    "max": _over_scalars("max", SCALAR),
    "sum": _over_scalars("sum", SCALAR),
    "any": _over_scalars("any", SCALAR),
    "all": _over_scalars("all", SCALAR),
    "abs": _over_scalars("abs", SCALAR),
    "round": _over_scalars("round", SCALAR),
    "pow": _over_scalars("pow", SCALAR),
    "divmod": _over_scalars("divmod", SHAPE),
    "int": _over_scalars("int", SCALAR),
    "float": _over_scalars("float", SCALAR),
    "bool": _over_scalars("bool", SCALAR),
    "str": _over_scalars("str", SCALAR),
    "tuple": _collect("tuple"),
    "list": _collect("list"),
    "set": _collect("set"),
    "sorted": _collect("sorted"),
    "reversed": _collect("reversed"),
    "dict": _dict,
    "enumerate": _enumerate,
    "zip": _zip,
    "isinstance": _isinstance,
    "super": _super,
}


# ---- the module's own classes ---------------------------------------------------------


def instantiate(an: Walker, scope: Scope, node: ast.Call, name: str, args: Args) -> Value:
    cls = an.module.classes[name]
    if cls.kind == "function":
        return an.reject(node, f"instantiates autograd Function {name}: call {name}.apply(...)")
    if cls.kind != "module":
        return REJECTED  # its definition was reported
    if scope.context is not Context.SETUP:
        return an.reject(node, f"builds {name} outside __init__")
    instance = Value(Kind.INSTANCE, name)
    found = an.module.method(cls, "__init__")
    if found is not None:
        owner, init = found
        an.run_function(init, args, Context.SETUP, owner=owner, bound=instance)
    return instance


# ---- kernels ----------------------------------------------------------------------------


def launcher(an: Walker, scope: Scope, node: ast.Subscript, kernel: Value) -> Value:
    grid = an.data(scope, node.slice)
    if grid.kind is Kind.REJECTED:
        return REJECTED
    if grid.kind is Kind.GRID or _ints(grid):
        return Value(Kind.LAUNCHER, kernel.name)
    return an.reject(node, f"launches {kernel.name} with a grid that is {grid}, not a tuple of ints or a grid lambda")


def _ints(value: Value) -> bool:
    if value.kind is not Kind.SEQ:
        return False
    parts = value.items if value.items is not None else (value.item or SCALAR,)
    return all(part.kind is Kind.SCALAR for part in parts)


def _launch(an: Walker, scope: Scope, node: ast.Call, args: Args) -> Value:
    for value in args.values():
        if value.kind not in (Kind.TENSOR, Kind.SCALAR, Kind.REJECTED):
            an.reject(node, f"passes {value} to a kernel")
    if scope.context is Context.FORWARD:
        an.launched = True
    return SCALAR


def grid_lambda(an: Walker, scope: Scope, node: ast.Lambda) -> Value:
    """`lambda meta: (triton.cdiv(n, meta["BLOCK"]),)`: Python ints from meta and the enclosing names."""
    if scope.context is Context.IMPORT:
        return an.reject(node, "defines a lambda at import time (a kernel grid belongs where the kernel is launched)")
    spec = node.args
    params = [*spec.posonlyargs, *spec.args]
    if len(params) != 1 or spec.vararg or spec.kwarg or spec.kwonlyargs or spec.defaults:
        return an.reject(node, "defines a lambda that is not a kernel grid (lambda meta: (...))")
    inner = scope.child()
    inner.env[params[0].arg] = Value(Kind.DICT, item=SCALAR)
    result = an.data(inner, node.body)
    if result.kind is Kind.REJECTED:
        return REJECTED
    if not _ints(result):
        return an.reject(node, f"defines a grid lambda that returns {result}, not a tuple of ints")
    return Value(Kind.GRID)
