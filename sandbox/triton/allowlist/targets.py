"""Assignment targets: binding names, and the writes that keep state between calls.

Only `__init__` (and what it calls) may store into `self`; a write into a module-level
container, into `self` or into a tensor held by `self` from forward is state carried from
one call to the next (a cache of outputs, a call counter), reported as such. Writing into
torch, triton or any imported module is monkeypatching.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist.indexing import tensor_index
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import REJECTED, SCALAR, Kind, Value, join, with_origin

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker

_STATE = "can memoise outputs across calls instead of computing them"


def bind(an: Walker, scope: Scope, target: ast.AST, value: Value, stmt: ast.AST) -> None:
    if isinstance(target, ast.Name):
        scope.env[target.id] = value
    elif isinstance(target, (ast.Tuple, ast.List)):
        _unpack(an, scope, target, value, stmt)
    elif isinstance(target, ast.Starred):
        bind(an, scope, target.value, Value(Kind.SEQ, item=value), stmt)
    elif isinstance(target, ast.Attribute):
        store_attribute(an, scope, target, value, stmt)
    elif isinstance(target, ast.Subscript):
        store_item(an, scope, target, value, stmt)
    else:
        an.reject(stmt, f"assigns to {type(target).__name__}")


def _unpack(an: Walker, scope: Scope, target: ast.Tuple | ast.List, value: Value, stmt: ast.AST) -> None:
    if value.kind is Kind.REJECTED:
        parts = [REJECTED] * len(target.elts)
    elif value.kind is Kind.SEQ:
        exact = value.items is not None and len(value.items) == len(target.elts)
        parts = list(value.items) if exact and value.items else [value.item or SCALAR] * len(target.elts)
    elif value.kind is Kind.TENSOR:
        parts = [an.reject(stmt, "unpacks a tensor's values on the host", Code.TORCH_COMPUTE)] * len(target.elts)
    else:
        parts = [an.reject(stmt, f"unpacks {value}")] * len(target.elts)
    for element, part in zip(target.elts, parts, strict=True):
        if isinstance(element, ast.Starred):
            bind(an, scope, element.value, Value(Kind.SEQ, item=part), stmt)
        else:
            bind(an, scope, element, part, stmt)


def store_attribute(an: Walker, scope: Scope, target: ast.Attribute, value: Value, stmt: ast.AST) -> None:
    base = an.evaluate(scope, target.value)
    if base.kind is Kind.REJECTED:
        return
    if base.kind is Kind.LIB:
        an.reject(stmt, f"patches {base.name} for everyone (monkeypatching)", Code.FORBIDDEN)
    elif base.kind is Kind.INSTANCE and scope.context is Context.SETUP:
        cls = an.module.classes[base.name]
        stored = with_origin(value, "self") if value.kind in (Kind.TENSOR, Kind.SEQ, Kind.DICT) else value
        cls.attrs[target.attr] = join(cls.attrs[target.attr], stored) if target.attr in cls.attrs else stored
    elif base.kind is Kind.INSTANCE:
        an.reject(stmt, f"keeps state in self.{target.attr} across calls: {_STATE}", Code.CACHE)
    elif base.kind is not Kind.CTX:
        an.reject(stmt, f"stores an attribute into {base}")


def store_item(an: Walker, scope: Scope, target: ast.Subscript, value: Value, stmt: ast.AST) -> None:
    base = an.evaluate(scope, target.value)
    if base.kind is Kind.REJECTED:
        return
    if base.kind is Kind.LIB:
        an.reject(stmt, f"patches {base.name} for everyone (monkeypatching)", Code.FORBIDDEN)
        return
    if not written_state(an, scope, base, stmt):
        if base.kind is Kind.TENSOR:
            tensor_index(an, scope, target.slice)  # a copy into a view: data movement
        elif base.kind in (Kind.SEQ, Kind.DICT):
            an.data(scope, target.slice)
        else:
            an.reject(stmt, f"stores an item into {base}")


def written_state(an: Walker, scope: Scope, base: Value, node: ast.AST) -> bool:
    """Reports a write into something that outlives the call; says whether it did."""
    if base.origin == "module":
        an.reject(node, f"writes a module-level container: {_STATE}", Code.CACHE)
        return True
    if base.origin == "self" and scope.context is Context.FORWARD:
        an.reject(node, f"writes into module state from forward: {_STATE}", Code.CACHE)
        return True
    return False
