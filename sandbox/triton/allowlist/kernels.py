"""Triton kernels: their decorators and what their bodies may name.

A kernel body may use triton.language, its parameters and locals, module constants,
other kernels and the builtins Triton's compiler accepts; on the CPU lane kernels run in
Triton's interpreter as plain Python, so a kernel reaching torch, numpy or any other
name would compute outside Triton where no compiler stops it. Plain functions a kernel
calls are held to the same rules (the compile job then refuses them, as Triton does).
Decorators run host code at import and launch time, so only `triton.jit`, `autotune`
with constant configs and `heuristics` whose lambdas do integer arithmetic are accepted.
"""

from __future__ import annotations

import ast
import builtins
from typing import TYPE_CHECKING

from sandbox.triton.allowlist.module import FuncNode, dotted
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import CACHE_DECORATORS, FRAME_ATTRIBUTES, KERNEL_ATTRIBUTES, KERNEL_BUILTINS

if TYPE_CHECKING:
    from sandbox.triton.allowlist.analysis import Analysis


def _classes(*roots: type) -> frozenset[type]:
    out: set[type] = set()
    stack = list(roots)
    while stack:
        cls = stack.pop()
        out.add(cls)
        stack.extend(cls.__subclasses__())
    return frozenset(out)


_STATEMENTS = frozenset(
    {
        ast.Assign,
        ast.AugAssign,
        ast.AnnAssign,
        ast.Expr,
        ast.Return,
        ast.If,
        ast.For,
        ast.While,
        ast.Break,
        ast.Continue,
        ast.Pass,
        ast.Assert,
    }
)
# Expressions, and the operator, context and other helper nodes they are made of.
_ALLOWED = (
    _STATEMENTS
    | {
        ast.BinOp,
        ast.UnaryOp,
        ast.BoolOp,
        ast.Compare,
        ast.IfExp,
        ast.Call,
        ast.Attribute,
        ast.Subscript,
        ast.Name,
        ast.Constant,
        ast.Tuple,
        ast.List,
        ast.Slice,
        ast.Starred,
        ast.keyword,
        ast.JoinedStr,
        ast.FormattedValue,
    }
    | _classes(ast.operator, ast.unaryop, ast.boolop, ast.cmpop, ast.expr_context)
)
_AUTOTUNE_KEYWORDS = frozenset(
    "configs key reset_to_zero restore_value warmup rep cache_results use_cuda_graph".split()
)
_KERNEL_ROOTS = ("triton", "math")
_BUILTIN_NAMES = frozenset(dir(builtins))
_HEURISTIC_CALLS = frozenset({"triton.next_power_of_2", "triton.cdiv", "min", "max", "int", "bool", "abs"})


def check_kernel(an: Analysis, func: FuncNode) -> None:
    _check_decorators(an, func)
    check_body(an, func)


def check_body(an: Analysis, func: FuncNode) -> None:
    """A kernel's (or a function called from one) body, once."""
    if func.name in an.kernels_checked:
        return
    an.kernels_checked.add(func.name)
    if isinstance(func, ast.AsyncFunctionDef):
        an.reject(func, f"kernel {func.name} is async")
        return
    nodes = [node for stmt in func.body for node in ast.walk(stmt)]
    local = {a.arg for a in (*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs)}
    local |= {a.arg for a in (func.args.vararg, func.args.kwarg) if a is not None}
    local |= {n.id for n in nodes if type(n) is ast.Name and type(n.ctx) is not ast.Load}
    for node in nodes:
        kind = type(node)
        if kind not in _ALLOWED:
            what = "statement" if isinstance(node, ast.stmt) else "construct"
            an.reject(node, f"kernel {func.name} uses a {kind.__name__} {what}, which Triton kernels may not")
        elif kind is ast.Attribute:
            _check_attribute(an, func, node)  # type: ignore[arg-type]
        elif kind is ast.Name and node.id not in local:  # type: ignore[attr-defined]
            _check_name(an, func, node)  # type: ignore[arg-type]


def _check_attribute(an: Analysis, func: FuncNode, node: ast.Attribute) -> None:
    name = node.attr
    if name in FRAME_ATTRIBUTES or (name.startswith("__") and name.endswith("__")):
        an.reject(node, f"kernel {func.name} reads .{name}: Python internals", Code.INTROSPECTION)
        return
    if name in KERNEL_ATTRIBUTES:
        return
    root = node.value
    while type(root) is ast.Attribute:
        root = root.value  # type: ignore[attr-defined]
    if not (type(root) is ast.Name and root.id in an.module.imports):  # type: ignore[attr-defined]
        an.reject(node, f"kernel {func.name} reads .{name}, which triton.language values do not have")


def _check_name(an: Analysis, func: FuncNode, node: ast.Name) -> None:
    name, module = node.id, an.module
    if name in module.constants or name in module.kernels:
        return
    if name in module.functions:
        check_body(an, module.functions[name])  # a helper a kernel calls: kernel rules
        return
    if name in module.imports:
        path = module.imports[name]
        if path.split(".")[0] not in _KERNEL_ROOTS:
            an.reject(node, f"kernel {func.name} uses {path}: kernels may use only triton.language")
        return
    if name in KERNEL_BUILTINS:
        return
    if name.startswith("__") and name.endswith("__"):
        an.reject(node, f"kernel {func.name} reads {name}: Python internals", Code.INTROSPECTION)
    elif name in module.classes:
        an.reject(node, f"kernel {func.name} uses class {name}: kernels may use only triton.language")
    elif name in _BUILTIN_NAMES:
        an.reject(node, f"kernel {func.name} calls {name}, which Triton kernels may not")
    else:
        an.reject(node, f"kernel {func.name} uses {name}, which is neither defined here nor allowed")


# ---- decorators -------------------------------------------------------------------------


def _check_decorators(an: Analysis, func: FuncNode) -> None:
    for decorator in func.decorator_list:
        path = dotted(decorator, an.module.imports)
        if path is not None and an.module.is_jit(decorator):
            if isinstance(decorator, ast.Call):
                _constant_arguments(an, decorator)
        elif path == "triton.autotune" and isinstance(decorator, ast.Call):
            _check_autotune(an, decorator)
        elif path == "triton.heuristics" and isinstance(decorator, ast.Call):
            _check_heuristics(an, decorator)
        elif path is not None and any(path == c or path.startswith(c + ".") for c in CACHE_DECORATORS):
            an.reject(decorator, f"uses {path}: can memoise outputs across calls instead of computing them", Code.CACHE)
        else:
            an.reject(decorator, f"kernel {func.name} has a decorator other than triton.jit, autotune and heuristics")


def _constant_arguments(an: Analysis, call: ast.Call) -> None:
    for arg in [*call.args, *(k.value for k in call.keywords)]:
        an.constant(arg)


def _check_autotune(an: Analysis, call: ast.Call) -> None:
    hooks = [k for k in call.keywords if k.arg not in _AUTOTUNE_KEYWORDS]
    for keyword in hooks:
        an.reject(keyword.value, f"autotune's {keyword.arg} runs host code the checker does not follow")
    _constant_arguments(an, ast.Call(call.func, call.args, [k for k in call.keywords if k not in hooks]))


def _check_heuristics(an: Analysis, call: ast.Call) -> None:
    table = call.args[0] if len(call.args) == 1 and not call.keywords else None
    if not isinstance(table, ast.Dict):
        an.reject(call, "triton.heuristics takes one dict of name: lambda args: ...")
        return
    for key, value in zip(table.keys, table.values, strict=True):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            an.reject(key or call, "a heuristics key that is not a string")
        _check_heuristic(an, value)


def _check_heuristic(an: Analysis, node: ast.AST) -> None:
    """`lambda args: triton.next_power_of_2(args["N"])`: arithmetic on launch arguments, nothing else."""
    params = node.args.args if isinstance(node, ast.Lambda) else []
    if not isinstance(node, ast.Lambda) or len(params) != 1 or node.args.vararg or node.args.kwarg:
        an.reject(node, "a heuristic that is not `lambda args: <arithmetic on args>`")
        return
    argument = params[0].arg
    allowed = (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Constant, ast.Subscript, ast.Tuple)
    for part in ast.walk(node.body):
        if isinstance(part, ast.Call):
            path = dotted(part.func, an.module.imports) or (part.func.id if isinstance(part.func, ast.Name) else None)
            if path not in _HEURISTIC_CALLS and not (path or "").startswith("math."):
                an.reject(part, "a heuristic may call only triton.next_power_of_2, cdiv, min, max and math")
        elif isinstance(part, ast.Name):
            if part.id != argument and part.id not in an.module.constants and part.id not in an.module.imports:
                if part.id not in _HEURISTIC_CALLS:
                    an.reject(part, f"a heuristic reads {part.id}")
        elif isinstance(part, ast.Attribute):
            if dotted(part, an.module.imports) is None:
                an.reject(part, "a heuristic reads attributes of launch arguments")
        elif not isinstance(part, (*allowed, ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
            an.reject(part, f"a heuristic uses {type(part).__name__}")
