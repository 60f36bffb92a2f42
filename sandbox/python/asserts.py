"""Split assert-style tests into candidate calls and trusted predicates.

HumanEval and MBPP ship tests as ``assert candidate(args) == expected``. Running that code
where the candidate runs would hand it the expected answers and the comparison itself (an
``__eq__`` that always answers True, a patched ``math.isclose``). So the test is parsed
here: each call of the candidate, with arguments this side can compute, becomes a request
the sandbox answers with a value as data, and the rest of the assert (comparisons, boolean
logic, ``isclose``, ``sorted``, ``in``, ``abs(a - b) < t``...) is evaluated in the service
by `rewards.predicate`. Tests that need real Python (loops, helpers, mutation, exceptions)
are instrumented instead and run whole inside the sandbox's isolated harness process, which never
executes candidate code and sees the candidate's values only as decoded data.
"""

from __future__ import annotations

import ast
import builtins
import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rewards import predicate
from sandbox.wire import codec

CANDIDATE = "candidate"
_BUILTIN_NAMES = frozenset(dir(builtins))
_NAME_CAP = 200


class InvalidTests(ValueError):
    """The test code itself is unusable (does not parse, has no asserts...)."""


@dataclass(frozen=True)
class SplitTest:
    name: str  # the assert's source, for people
    predicate: ast.expr  # the assert's test, candidate calls replaced by observation slots
    observations: tuple[int, ...]  # indices into AssertPlan.calls that the predicate reads
    names: Mapping[str, Any]  # the test's own bindings at this assert (constants, math)


@dataclass(frozen=True)
class AssertPlan:
    # Split mode: the candidate calls to make, (args, kwargs) as plain values, and the asserts
    # judged on the trusted side from their results.
    calls: tuple[tuple[list[Any], dict[str, Any]], ...] = ()
    tests: tuple[SplitTest, ...] = ()
    # Whole mode (when the tests cannot be split, or a split test meets a value that is not
    # data): instrumented code, one name per assert site, and the names the code uses but
    # does not define (helpers that must come from the task's trusted setup code, like
    # HumanEval's `poly`).
    check_code: str = ""
    sites: tuple[str, ...] = ()
    externals: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        return not self.tests


def plan_asserts(code: str, entry_point: str) -> AssertPlan:
    try:
        tree = ast.parse(code)
        compile(tree, "<tests>", "exec", dont_inherit=True)  # what parses but cannot run
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidTests(f"does not compile: {exc}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and any(
            isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in ast.walk(node.test)
        ):
            raise InvalidTests(f"line {node.lineno}: an assert must not yield or await")
    tree.body = [s for s in tree.body if not _is_check_call(s)]
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        raise InvalidTests("has no assert statements")
    try:
        split = _split(tree, entry_point)
    except _CannotSplit:
        split = None
    whole = _instrument(tree)  # also kept for split tests: a value that is not data needs it
    return whole if split is None else dataclasses.replace(whole, calls=split.calls, tests=split.tests)


def _is_check_call(stmt: ast.stmt) -> bool:
    """`check(candidate_fn)` at module level: the harness calls check itself."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "check"
    )


class _CannotSplit(Exception):
    """This test code needs real Python: it runs whole, in the sandbox's isolated harness."""


def _split(tree: ast.Module, entry_point: str) -> AssertPlan:
    """Asserts whose only contact with the candidate is calls with computable arguments.

    Statements are walked in order: imports of `math` and assignments of computable values
    bind names (so `input = 'hello'` shadows the builtin, as in Python); any other
    statement, or an assert this evaluator cannot judge, sends the whole test to the isolated harness.
    """
    checks = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"]
    if checks:
        check = checks[0]
        if len(check.args.args) != 1 or check.decorator_list or len(checks) > 1:
            raise _CannotSplit
        callee = check.args.args[0].arg
        outer = [s for s in tree.body if s is not check]
        body = check.body
    else:
        callee, outer, body = entry_point, [], tree.body
    callees = frozenset({callee, entry_point})
    names: dict[str, Any] = {}
    calls: list[tuple[list[Any], dict[str, Any]]] = []
    tests: list[SplitTest] = []
    for stmt in [*outer, *body]:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            _bind_import(stmt, names, callees)
        elif _is_ignorable(stmt):
            continue
        elif isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) and stmt in outer:
            names.pop(stmt.name, None)  # a module-level helper: any use of it needs the isolated harness
        elif isinstance(stmt, ast.Assign):
            _bind_assignment(stmt, names, callees)
        elif isinstance(stmt, ast.Assert):
            test = _split_assert(stmt, callees, names, calls)
            if test is not None:
                tests.append(test)
        else:
            raise _CannotSplit
    if not tests:
        raise _CannotSplit
    return AssertPlan(calls=tuple(calls), tests=tuple(tests))


def _is_ignorable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    # a docstring, or a bare name like HumanEval/129's stray `print`
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Constant, ast.Name))


def _bind_import(stmt: ast.Import | ast.ImportFrom, names: dict[str, Any], callees: frozenset[str]) -> None:
    for alias in stmt.names:
        bound = (alias.asname or alias.name).split(".")[0]
        if bound in callees:
            raise _CannotSplit
        names.pop(bound, None)  # other modules are not available to the evaluator
        if isinstance(stmt, ast.Import) and alias.name == "math":
            names[bound] = math
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "math" and alias.name in predicate.MATH:
            names[bound] = predicate.MATH[alias.name]


def _bind_assignment(stmt: ast.Assign, names: dict[str, Any], callees: frozenset[str]) -> None:
    if _uses(stmt.value, callees):
        raise _CannotSplit
    value = _compute(stmt.value, names)
    for target in stmt.targets:
        if isinstance(target, ast.Name) and target.id not in callees:
            names[target.id] = value
        elif isinstance(target, ast.Tuple) and all(
            isinstance(t, ast.Name) and t.id not in callees for t in target.elts
        ):
            items = list(value) if isinstance(value, (tuple, list)) else None
            if items is None or len(items) != len(target.elts):
                raise _CannotSplit
            names.update({t.id: v for t, v in zip(target.elts, items, strict=True)})  # type: ignore[attr-defined]
        else:
            raise _CannotSplit


def _uses(node: ast.AST, names: frozenset[str]) -> bool:
    return any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node))


def _compute(node: ast.expr, names: dict[str, Any]) -> Any:
    """A value the test computes without the candidate, computed here (trusted, bounded)."""
    if not predicate.supported(node, names):
        raise _CannotSplit

    def no_observations(index: int) -> Any:
        raise _CannotSplit

    try:
        return predicate.Evaluator(names, no_observations).evaluate(node)
    except Exception:  # noqa: BLE001 - whatever the test's own code raises: let Python judge it
        raise _CannotSplit from None


def _mutable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, (list, dict, set, bytearray)) or depth > 64:
        return True
    return isinstance(value, (tuple, frozenset)) and any(_mutable(v, depth + 1) for v in value)


def _split_assert(
    stmt: ast.Assert, callees: frozenset[str], names: dict[str, Any], calls: list[tuple[list[Any], dict[str, Any]]]
) -> SplitTest | None:
    """The assert with its candidate calls taken out; None for one that is true regardless."""
    first = len(calls)

    class TakeCalls(ast.NodeTransformer):
        def visit_Call(self, node: ast.Call) -> ast.AST:
            if not (isinstance(node.func, ast.Name) and node.func.id in callees):
                self.generic_visit(node)
                return node
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if any(k.arg is None for k in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
                raise _CannotSplit
            if any(_uses(a, callees) for a in arguments):
                raise _CannotSplit  # candidate(candidate(x)): the inner value is not known here
            args = [_compute(a, names) for a in node.args]
            kwargs = {str(k.arg): _compute(k.value, names) for k in node.keywords}
            shared = [a for a in arguments if not isinstance(a, ast.Constant) and _uses(a, frozenset(names))]
            if any(_mutable(_compute(a, names)) for a in shared):
                raise _CannotSplit  # the candidate may mutate a list the test looks at again
            try:
                codec.encode([args, kwargs])
            except (ValueError, RecursionError):
                raise _CannotSplit from None
            calls.append((args, kwargs))
            return ast.copy_location(predicate.slot(len(calls) - 1), node)

    test = TakeCalls().visit(copy.deepcopy(stmt.test))
    if _uses(test, callees) or not predicate.supported(test, names):
        raise _CannotSplit
    observations = tuple(range(first, len(calls)))
    if not observations:
        if _compute(test, names):
            return None  # `assert True, "..."` and the like
        raise _CannotSplit  # a test of the test's own state: Python decides
    return SplitTest(ast.unparse(stmt)[:_NAME_CAP], test, observations, dict(names))


def _instrument(tree: ast.Module) -> AssertPlan:
    """Whole mode: every assert becomes a report to the isolated harness, numbered by site."""
    sites: list[str] = []

    class Instrument(ast.NodeTransformer):
        def visit_Assert(self, node: ast.Assert) -> ast.stmt:
            sites.append(ast.unparse(node)[:_NAME_CAP])
            call = ast.Call(
                func=ast.Name("__rft_assert", ast.Load()),
                args=[
                    ast.Constant(len(sites) - 1),
                    ast.Lambda(ast.arguments([], [], None, [], [], None, []), node.test),
                ],
                keywords=[],
            )
            return ast.copy_location(ast.Expr(call), node)

    externals = _free_names(tree)
    instrumented = ast.fix_missing_locations(Instrument().visit(tree))
    return AssertPlan(check_code=ast.unparse(instrumented), sites=tuple(sites), externals=externals)


def defined_names(code: str) -> frozenset[str]:
    """Names a module defines at its top level (functions, classes, assignments, imports)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise InvalidTests(f"does not compile: {exc}") from None
    names: set[str] = set()
    for stmt in tree.body:
        for node in ast.walk(stmt) if not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) else [stmt]:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def _free_names(tree: ast.Module) -> tuple[str, ...]:
    loaded, bound = set(), set(_BUILTIN_NAMES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return tuple(sorted(loaded - bound))
