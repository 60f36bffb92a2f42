"""The state one candidate's check shares, and the seams between its parts.

`evaluate`, `run_block` and `run_function` call into exprs.py, statements.py and
functions.py, which call each other only through here (they recurse into each other)
and see it only as a `Walker` (walker.py), so that they do not depend on this module.
"""

from __future__ import annotations

import ast
from typing import Any

from sandbox.triton.allowlist import exprs, functions, statements
from sandbox.triton.allowlist.args import Args
from sandbox.triton.allowlist.module import ClassModel, FuncNode, ModuleModel
from sandbox.triton.allowlist.report import Code, Report
from sandbox.triton.allowlist.scope import Scope
from sandbox.triton.allowlist.tables import Context
from sandbox.triton.allowlist.values import REJECTED, Value


class Analysis:
    def __init__(self, code: str, tree: ast.Module, reference_module: str) -> None:
        self.report = Report(code)
        self.module = ModuleModel(tree)
        self.reference_module = reference_module
        self.memo: dict[Any, Value] = {}
        self.active: list[Any] = []
        self.launched = False  # a kernel launch reachable from ModelNew.forward
        self.kernels_checked: set[str] = set()

    def reject(self, node: ast.AST | None, message: str, code: str = Code.NOT_ALLOWLISTED) -> Value:
        self.report.add(code, message, node)
        return REJECTED

    def evaluate(self, scope: Scope, node: ast.AST) -> Value:
        return exprs.evaluate(self, scope, node)

    def data(self, scope: Scope, node: ast.AST) -> Value:
        """An expression whose value is stored, passed or returned (functions may not be)."""
        return exprs.as_data(self, node, exprs.evaluate(self, scope, node))

    def constant(self, node: ast.AST) -> Value:
        """An expression evaluated at import time (module level, defaults, decorator arguments)."""
        return self.data(Scope(Context.IMPORT), node)

    def resolve(self, node: ast.AST) -> Value:
        """What a module-level expression names (an assignment target's base), not used as a value."""
        return self.evaluate(Scope(Context.IMPORT), node)

    def run_block(self, scope: Scope, body: list[ast.stmt]) -> None:
        statements.run_block(self, scope, body)

    def run_function(
        self,
        func: FuncNode,
        args: Args,
        context: Context,
        *,
        owner: ClassModel | None = None,
        bound: Value | None = None,
    ) -> Value:
        return functions.call_function(self, func, args, context, owner=owner, bound=bound)
