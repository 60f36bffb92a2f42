"""Host statements: what a function the harness can reach may do, statement by statement.

Control flow on Python values is free; a try whose handler carries on (anything but
re-raising) is a fallback to something other than the kernel, except in `__init__`,
which cannot see an input. Functions, classes and imports inside functions are not
followed (a factory's product is a function the checker never sees), nor are `global`
writes, `with` blocks other than `torch.no_grad()` and friends, or async code.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist import exprs, targets
from sandbox.triton.allowlist.module import dotted
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import SCALAR, Kind, Value, join

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_FALLBACK = "catches a failure and carries on with something else"


def run_block(an: Walker, scope: Scope, body: list[ast.stmt]) -> None:
    for stmt in body:
        handler = _HANDLERS.get(type(stmt))
        if handler is None:
            an.reject(stmt, f"uses a {type(stmt).__name__} statement, which host code here may not")
        else:
            handler(an, scope, stmt)


def _assign(an: Walker, scope: Scope, stmt: ast.Assign) -> None:
    value = an.data(scope, stmt.value)
    for target in stmt.targets:
        targets.bind(an, scope, target, value, stmt)


def _annassign(an: Walker, scope: Scope, stmt: ast.AnnAssign) -> None:
    if stmt.value is not None:
        targets.bind(an, scope, stmt.target, an.data(scope, stmt.value), stmt)


def _augassign(an: Walker, scope: Scope, stmt: ast.AugAssign) -> None:
    target = stmt.target
    if isinstance(target, ast.Name):
        current = scope.env.get(target.id)
        if current is None:  # not a local: a module-level name, written
            an.reject(stmt, f"rebinds module-level {target.id}", Code.CACHE)
            return
        scope.env[target.id] = exprs.binary(an, scope, stmt, stmt.op, current, an.data(scope, stmt.value))
        return
    if isinstance(target, ast.Attribute):
        current = an.evaluate(scope, target)
        value = exprs.binary(an, scope, stmt, stmt.op, current, an.data(scope, stmt.value))
        targets.store_attribute(an, scope, target, value, stmt)
        return
    current = an.evaluate(scope, target)
    if current.kind is Kind.TENSOR:
        an.reject(
            stmt, "computes with torch instead of a Triton kernel (in-place arithmetic on a tensor)", Code.TORCH_COMPUTE
        )
    else:
        targets.store_item(
            an, scope, target, exprs.binary(an, scope, stmt, stmt.op, current, an.data(scope, stmt.value)), stmt
        )


def _expr(an: Walker, scope: Scope, stmt: ast.Expr) -> None:
    an.evaluate(scope, stmt.value)


def _return(an: Walker, scope: Scope, stmt: ast.Return) -> None:
    value = an.data(scope, stmt.value) if stmt.value is not None else SCALAR
    scope.returned = value if scope.returned is None else join(scope.returned, value)


def _if(an: Walker, scope: Scope, stmt: ast.If | ast.While) -> None:
    exprs.truth(an, scope, stmt.test)
    an.run_block(scope, stmt.body)
    an.run_block(scope, stmt.orelse)


def _for(an: Walker, scope: Scope, stmt: ast.For) -> None:
    targets.bind(an, scope, stmt.target, exprs.iterate(an, scope, stmt.iter), stmt)
    an.run_block(scope, stmt.body)
    an.run_block(scope, stmt.orelse)


def _assert(an: Walker, scope: Scope, stmt: ast.Assert) -> None:
    exprs.truth(an, scope, stmt.test)
    if stmt.msg is not None:
        an.data(scope, stmt.msg)


def _raise(an: Walker, scope: Scope, stmt: ast.Raise) -> None:
    for part in (stmt.exc, stmt.cause):
        if part is None:
            continue
        value = an.evaluate(scope, part)
        if not (value.kind in (Kind.EXC, Kind.REJECTED) or (value.kind is Kind.BUILTIN and value.name[:1].isupper())):
            an.reject(stmt, f"raises {value}")


def _try(an: Walker, scope: Scope, stmt: ast.Try) -> None:
    carries_on = [h for h in stmt.handlers if not all(isinstance(s, ast.Raise) for s in h.body)]
    if carries_on and scope.context is not Context.SETUP:
        an.reject(stmt, _FALLBACK, Code.FALLBACK)
    an.run_block(scope, stmt.body)
    for handler in stmt.handlers:
        if handler.type is not None:
            an.evaluate(scope, handler.type)
        if handler.name:
            scope.env[handler.name] = Value(Kind.EXC)
        an.run_block(scope, handler.body)
    an.run_block(scope, stmt.orelse)
    an.run_block(scope, stmt.finalbody)


def _with(an: Walker, scope: Scope, stmt: ast.With) -> None:
    for item in stmt.items:
        context = item.context_expr
        path = _dotted_call(an, scope, context)
        if path == "contextlib.suppress":
            an.reject(stmt, "suppresses kernel failures", Code.FALLBACK)
            continue
        value = an.evaluate(scope, context)
        if value.kind is Kind.REJECTED:
            continue
        if value.name != "context" or item.optional_vars is not None:
            an.reject(
                context, "uses a with block other than torch.no_grad(), torch.inference_mode() or torch.cuda.device()"
            )
    an.run_block(scope, stmt.body)


def _dotted_call(an: Walker, scope: Scope, node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
        return dotted(node.func, an.module.imports)
    return None


def _global(an: Walker, scope: Scope, stmt: ast.Global | ast.Nonlocal) -> None:
    an.reject(stmt, f"declares global {', '.join(stmt.names)}: can memoise outputs across calls", Code.CACHE)


def _delete(an: Walker, scope: Scope, stmt: ast.Delete) -> None:
    for target in stmt.targets:
        if isinstance(target, ast.Name) and target.id in scope.env:
            del scope.env[target.id]
        else:
            an.reject(stmt, "deletes something other than a local name")


def _definition(an: Walker, scope: Scope, stmt: ast.stmt) -> None:
    an.reject(stmt, "defines a function or class inside a function: closures and factories are not followed")


def _import(an: Walker, scope: Scope, stmt: ast.stmt) -> None:
    an.reject(stmt, "imports inside a function: imports belong at the top of the module")


def _nothing(an: Walker, scope: Scope, stmt: ast.stmt) -> None:
    return None


_HANDLERS = {
    ast.Assign: _assign,
    ast.AnnAssign: _annassign,
    ast.AugAssign: _augassign,
    ast.Expr: _expr,
    ast.Return: _return,
    ast.If: _if,
    ast.While: _if,
    ast.For: _for,
    ast.Assert: _assert,
    ast.Raise: _raise,
    ast.Try: _try,
    ast.With: _with,
    ast.Global: _global,
    ast.Nonlocal: _global,
    ast.Delete: _delete,
    ast.FunctionDef: _definition,
    ast.AsyncFunctionDef: _definition,
    ast.ClassDef: _definition,
    ast.Import: _import,
    ast.ImportFrom: _import,
    ast.Pass: _nothing,
    ast.Break: _nothing,
    ast.Continue: _nothing,
}
if hasattr(ast, "TryStar"):
    _HANDLERS[ast.TryStar] = _try
