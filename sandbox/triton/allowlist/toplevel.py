"""The module's top level: what may run at import time, and the shape of each definition.

Import time may import torch, triton and math, bind constants (numbers, strings, dtypes,
tuples, lists and dicts of them, `triton.Config`s), and define kernels, host functions
and classes deriving from nn.Module or torch.autograd.Function. Nothing else runs there:
no calls, no tensors, no patching. `if __name__ == "__main__":` blocks never run when
the harness imports the module, and are skipped.
"""

from __future__ import annotations

import ast
import builtins
from typing import TYPE_CHECKING

from sandbox.triton.allowlist.module import FUNCTION_BASES, MODULE_BASES, FuncNode, dotted
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import (
    ALLOWED_MODULES,
    CACHE_DECORATORS,
    INTROSPECTION_MODULES,
    LIBRARY_CALLS,
    NN_MODULE_API,
    forbidden_reason,
)
from sandbox.triton.allowlist.values import SCALAR, Kind, Value, with_origin

if TYPE_CHECKING:
    from sandbox.triton.allowlist.analysis import Analysis

_BUILTIN_NAMES = frozenset(dir(builtins))
_ANNOTATION_NODES = (ast.Name, ast.Attribute, ast.Subscript, ast.Constant, ast.Tuple, ast.List, ast.BinOp, ast.Load)


def check_module(an: Analysis) -> None:
    for stmt in an.module.tree.body:
        _TOPLEVEL.get(type(stmt), _other)(an, stmt)


# ---- imports ----------------------------------------------------------------------------


def _import(an: Analysis, stmt: ast.Import | ast.ImportFrom) -> None:
    if isinstance(stmt, ast.ImportFrom):
        if stmt.level:
            an.reject(stmt, "a relative import")
            return
        base = stmt.module or ""
        if any(alias.name == "*" for alias in stmt.names):
            an.reject(stmt, f"a star import from {base} hides which names are used")
        paths = [base, *(f"{base}.{alias.name}" for alias in stmt.names)]
    else:
        paths = [alias.name for alias in stmt.names]
    for path in paths:
        if _import_path(an, stmt, path, allowed_base=isinstance(stmt, ast.ImportFrom) and path != paths[0]):
            return


def _import_path(an: Analysis, stmt: ast.stmt, path: str, *, allowed_base: bool) -> bool:
    """Reports an import that is not allowed; says whether it did."""
    ref = an.reference_module
    if "reference" in path.lower() or path == ref or path.startswith(ref + ".") or path == "__main__":
        an.reject(stmt, f"imports the reference module ({path})", Code.REFERENCE)
        return True
    why = forbidden_reason(path)
    if why:
        an.reject(stmt, f"imports {path}: {why}", Code.FORBIDDEN)
        return True
    if path.split(".")[0] in INTROSPECTION_MODULES:
        an.reject(stmt, f"imports {path}: introspection, the way to frames and other modules", Code.INTROSPECTION)
        return True
    if not allowed_base and path not in ALLOWED_MODULES:
        an.reject(stmt, f"imports {path}: only torch, torch.nn, triton, triton.language and math may be imported")
        return True
    return False


# ---- constants --------------------------------------------------------------------------


def _assign(an: Analysis, stmt: ast.Assign | ast.AnnAssign) -> None:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    if isinstance(stmt, ast.AnnAssign):
        annotation(an, stmt.annotation)
    value = an.constant(stmt.value) if stmt.value is not None else SCALAR
    for target in targets:
        _bind(an, stmt, target, value)


def _bind(an: Analysis, stmt: ast.stmt, target: ast.AST, value: Value) -> None:
    if isinstance(target, ast.Name):
        if target.id.startswith("__") and target.id.endswith("__"):
            an.reject(stmt, f"assigns {target.id}: the module's internals", Code.INTROSPECTION)
        else:
            an.module.constants[target.id] = (
                with_origin(value, "module") if value.kind in (Kind.SEQ, Kind.DICT) else value
            )
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            _bind(an, stmt, element, value.item or SCALAR if value.kind is Kind.SEQ else value)
    elif isinstance(target, (ast.Attribute, ast.Subscript)):
        base = an.resolve(target.value)
        if base.kind is Kind.LIB:
            an.reject(stmt, f"patches {base.name} for everyone (monkeypatching)", Code.FORBIDDEN)
        elif base.kind is not Kind.REJECTED:
            an.reject(stmt, f"writes into {base} at import time")
    else:
        an.reject(stmt, f"assigns to {type(target).__name__} at import time")


# ---- definitions ------------------------------------------------------------------------


def _function(an: Analysis, stmt: FuncNode) -> None:
    signature(an, stmt)
    if stmt.name in an.module.kernels:
        return  # kernels.check_kernel judges decorators and body
    for decorator in stmt.decorator_list:
        _host_decorator(an, stmt, decorator, allow_static=False)


def _host_decorator(an: Analysis, func: FuncNode, decorator: ast.AST, *, allow_static: bool) -> None:
    path = dotted(decorator, an.module.imports)
    if allow_static and isinstance(decorator, ast.Name) and decorator.id == "staticmethod":
        return
    if path is not None and isinstance(decorator, ast.Call) and LIBRARY_CALLS.get(path, ("",))[0] == "context":
        return  # @torch.no_grad()
    if path is not None and any(path == c or path.startswith(c + ".") for c in CACHE_DECORATORS):
        an.reject(decorator, f"uses {path}: can memoise outputs across calls instead of computing them", Code.CACHE)
    elif path in ("triton.autotune", "triton.heuristics"):
        an.reject(decorator, f"{func.name} has {path} but no triton.jit")
    else:
        an.reject(decorator, f"decorates {func.name}: decorators run code the checker does not follow")


def signature(an: Analysis, func: FuncNode) -> None:
    """Defaults and annotations run when the function is defined, at import time."""
    spec = func.args
    for default in [*spec.defaults, *(d for d in spec.kw_defaults if d is not None)]:
        value = an.constant(default)
        if value.kind in (Kind.SEQ, Kind.DICT) and not isinstance(default, ast.Tuple):
            an.reject(default, f"{func.name} has a mutable default, which keeps state across calls", Code.CACHE)
    params = [*spec.posonlyargs, *spec.args, *spec.kwonlyargs, spec.vararg, spec.kwarg]
    for param in params:
        if param is not None and param.annotation is not None:
            annotation(an, param.annotation)
    if func.returns is not None:
        annotation(an, func.returns)


def annotation(an: Analysis, node: ast.AST) -> None:
    """Type names only: an annotation is evaluated at import time unless annotations are postponed."""
    for part in ast.walk(node):
        if isinstance(part, ast.Attribute) and part.attr.startswith("__"):
            an.reject(part, f"reads .{part.attr} in an annotation", Code.INTROSPECTION)
        elif isinstance(part, ast.BinOp) and not isinstance(part.op, ast.BitOr):
            an.reject(part, "an annotation that computes")
        elif not isinstance(part, (*_ANNOTATION_NODES, ast.BitOr)):
            an.reject(part, "an annotation that runs code at import time")


def _class(an: Analysis, stmt: ast.ClassDef) -> None:
    cls = an.module.classes[stmt.name]
    for decorator in stmt.decorator_list:
        an.reject(decorator, f"decorates class {stmt.name}: decorators run code the checker does not follow")
    for keyword in stmt.keywords:
        an.reject(keyword.value, f"class {stmt.name} passes {keyword.arg}= (metaclasses run code)")
    for base in stmt.bases:
        _class_base(an, stmt, base)
    for item in stmt.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _method(an, cls.kind, item)
        elif isinstance(item, ast.Assign) and all(isinstance(t, ast.Name) for t in item.targets):
            value = an.constant(item.value)
            if value.kind in (Kind.SEQ, Kind.DICT):
                value = with_origin(value, "module")  # shared by every instance: never written at run time
            for target in item.targets:
                an.module.class_constants[(stmt.name, target.id)] = value  # type: ignore[attr-defined]
        elif not (isinstance(item, ast.Pass) or _docstring(item)):
            an.reject(item, f"class {stmt.name} runs a {type(item).__name__} in its body")


def _class_base(an: Analysis, stmt: ast.ClassDef, base: ast.expr) -> None:
    if (isinstance(base, ast.Name) and base.id == "Model") or (
        isinstance(base, ast.Attribute) and base.attr == "Model"
    ):
        an.reject(base, "subclasses the reference Model", Code.REFERENCE)
        return
    if isinstance(base, ast.Name) and base.id in an.module.classes and base.id != stmt.name:
        return
    if dotted(base, an.module.imports) in (MODULE_BASES | FUNCTION_BASES):
        return
    an.reject(base, f"class {stmt.name} derives from something other than nn.Module or torch.autograd.Function")


def _method(an: Analysis, kind: str, func: FuncNode) -> None:
    name = func.name
    if name.startswith("__") and name.endswith("__") and name != "__init__":
        an.reject(func, f"defines {name}: Python would run it behind forward's back")
    elif kind == "module" and name in NN_MODULE_API:
        an.reject(func, f"overrides nn.Module.{name}, which the harness and torch call")
    if isinstance(func, ast.AsyncFunctionDef):
        an.reject(func, f"{name} is async")
    for decorator in func.decorator_list:
        _host_decorator(an, func, decorator, allow_static=True)
    signature(an, func)


# ---- other statements -----------------------------------------------------------------


def _docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _expr(an: Analysis, stmt: ast.Expr) -> None:
    if _docstring(stmt):
        return
    before = len(an.report.findings)
    an.constant(stmt.value)
    if len(an.report.findings) == before:
        an.reject(stmt, "runs code at import time")


def _if(an: Analysis, stmt: ast.If) -> None:
    test = stmt.test
    main_guard = (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )
    if not main_guard:
        an.reject(stmt, "runs a conditional at import time")


def _raise(an: Analysis, stmt: ast.Raise) -> None:
    if stmt.exc is not None:
        an.constant(stmt.exc)


def _try(an: Analysis, stmt: ast.Try) -> None:
    if any(not all(isinstance(s, ast.Raise) for s in h.body) for h in stmt.handlers):
        an.reject(stmt, "catches a failure at import time and carries on with something else", Code.FALLBACK)
    else:
        an.reject(stmt, "runs a try block at import time")


def _nothing(an: Analysis, stmt: ast.stmt) -> None:
    return None


def _other(an: Analysis, stmt: ast.stmt) -> None:
    an.reject(stmt, f"runs a {type(stmt).__name__} statement at import time")


_TOPLEVEL = {
    ast.Import: _import,
    ast.ImportFrom: _import,
    ast.Assign: _assign,
    ast.AnnAssign: _assign,
    ast.FunctionDef: _function,
    ast.AsyncFunctionDef: _function,
    ast.ClassDef: _class,
    ast.Expr: _expr,
    ast.If: _if,
    ast.Raise: _raise,
    ast.Try: _try,
    ast.Pass: _nothing,
}
