"""What the visitors (exprs, statements, functions, calls, ...) need from the analysis driving them.

The visitors recurse into each other through the analysis (analysis.py), which imports
them; were they to name `Analysis` back, even only in annotations, the two would depend on
each other. They depend on this protocol instead, which names only leaf modules, and
`Analysis` satisfies it structurally. It declares exactly what the visitors use: grow it
when a visitor needs more, not before.
"""

from __future__ import annotations

import ast
from typing import Any, Protocol

from sandbox.triton.allowlist.args import Args
from sandbox.triton.allowlist.module import ClassModel, FuncNode, ModuleModel
from sandbox.triton.allowlist.report import Code
from sandbox.triton.allowlist.scope import Scope
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import Value


class Walker(Protocol):
    module: ModuleModel
    memo: dict[Any, Value]  # a function's result per call shape
    active: list[Any]  # the call shapes being analysed, innermost last
    launched: bool  # a kernel launch reachable from ModelNew.forward

    def reject(self, node: ast.AST | None, message: str, code: str = Code.NOT_ALLOWLISTED) -> Value: ...

    def evaluate(self, scope: Scope, node: ast.AST) -> Value: ...

    def data(self, scope: Scope, node: ast.AST) -> Value: ...

    def run_block(self, scope: Scope, body: list[ast.stmt]) -> None: ...

    def run_function(
        self,
        func: FuncNode,
        args: Args,
        context: Context,
        *,
        owner: ClassModel | None = None,
        bound: Value | None = None,
    ) -> Value: ...
