"""Indexing a tensor: basic indexing is a view; indexing with a tensor or a list is a gather (compute)."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.values import Kind

if TYPE_CHECKING:
    from sandbox.triton.allowlist.scope import Scope
    from sandbox.triton.allowlist.walker import Walker


def tensor_index(an: Walker, scope: Scope, index: ast.AST) -> None:
    """Basic indexing (ints, slices, None, ...) is a view; a tensor or a list as index is a gather."""
    parts = index.elts if isinstance(index, ast.Tuple) else [index]
    for part in parts:
        if isinstance(part, ast.Slice):
            an.evaluate(scope, part)
            continue
        value = an.data(scope, part)
        if value.kind is Kind.TENSOR:
            an.reject(
                part, "computes with torch instead of a Triton kernel (indexes with a tensor)", Code.TORCH_COMPUTE
            )
        elif value.kind is Kind.SEQ:
            an.reject(part, "computes with torch instead of a Triton kernel (indexes with a list)", Code.TORCH_COMPUTE)
        elif value.kind not in (Kind.SCALAR, Kind.REJECTED):
            an.reject(part, f"indexes a tensor with {value}")
