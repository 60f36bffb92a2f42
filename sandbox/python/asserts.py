"""Split assert-style tests into (expression, expected) pairs on the trusted side.

HumanEval and MBPP ship tests as ``assert candidate(args) == expected``. Running that
code in the sandbox would put every expected answer in reach of the candidate. So we
parse it here: for each assert whose expected side is a literal, the sandbox only
evaluates the other side (``candidate(args)``) and the comparison happens in the
service. Tests that cannot be split that way (expected values computed by helper code,
loops over random inputs...) are instrumented instead and run whole inside the
sandbox's judge process, which never executes candidate code itself.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass
from typing import Any

CANDIDATE = "candidate"
_BUILTIN_NAMES = frozenset(dir(builtins))
_NAME_CAP = 200


class InvalidTests(ValueError):
    """The test code itself is unusable (does not parse, has no asserts...)."""


@dataclass(frozen=True)
class SplitTest:
    name: str  # the assert's source, for people
    expr: str  # evaluated in the sandbox, with `candidate` bound
    op: str  # eq | ne | is | truthy | falsy | close
    expected: Any = None
    tolerance: float = 0.0


@dataclass(frozen=True)
class AssertPlan:
    preamble: tuple[str, ...] = ()
    tests: tuple[SplitTest, ...] = ()
    # Whole mode (tests could not be split): instrumented code, one name per assert site,
    # and the names the code uses but does not define (helpers from the prompt, like
    # HumanEval's `poly`): the judge binds those to calls into the candidate process.
    check_code: str = ""
    sites: tuple[str, ...] = ()
    externals: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        return bool(self.sites)


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
    split = _try_split(tree, entry_point)
    return split if split is not None else _instrument(tree)


def _is_check_call(stmt: ast.stmt) -> bool:
    """`check(candidate_fn)` at module level: the harness calls check itself."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "check"
    )


def _try_split(tree: ast.Module, entry_point: str) -> AssertPlan | None:
    checks = [s for s in tree.body if isinstance(s, ast.FunctionDef) and s.name == "check"]
    if checks:
        check = checks[0]
        if len(check.args.args) != 1 or check.decorator_list:
            return None
        callee = check.args.args[0].arg
        outer = [s for s in tree.body if s is not check]
        body = check.body
        if not all(_is_ignorable(s) or isinstance(s, (ast.Import, ast.ImportFrom)) for s in outer):
            return None
    else:
        callee, outer, body = entry_point, [], tree.body

    preamble: list[str] = []
    imported: set[str] = set()
    for stmt in [*outer, *body]:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            preamble.append(ast.unparse(stmt))
            imported.update((a.asname or a.name).split(".")[0] for a in stmt.names)
    allowed = _BUILTIN_NAMES | imported | {callee}
    tests: list[SplitTest] = []
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) or _is_ignorable(stmt):
            continue
        if not isinstance(stmt, ast.Assert):
            return None
        if isinstance(stmt.test, ast.Constant):
            continue  # `assert True, "..."`
        test = _split_one(stmt, callee, allowed)
        if test is None:
            return None
        tests.append(test)
    if not tests:
        return None
    return AssertPlan(preamble=tuple(preamble), tests=tuple(tests))


def _is_ignorable(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return True  # docstring
    if isinstance(stmt, ast.Assign) and all(isinstance(t, ast.Name) for t in stmt.targets):
        return _literal(stmt.value) is not _NO  # METADATA = {...}
    return False


_NO = object()


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NO


def _evaluable(node: ast.expr, callee: str, allowed: frozenset[str] | set[str]) -> bool:
    """Safe to evaluate in the sandbox: calls the candidate, uses only known names."""
    names = [n for n in ast.walk(node) if isinstance(n, ast.Name)]
    local = {n.id for n in names if isinstance(n.ctx, ast.Store)}
    if any(isinstance(n, (ast.NamedExpr, ast.Lambda, ast.Await, ast.Yield)) for n in ast.walk(node)):
        return False
    loads = {n.id for n in names if isinstance(n.ctx, ast.Load)}
    return callee in loads and loads <= (allowed | local)


def _rename(node: ast.expr, callee: str) -> str:
    class Rename(ast.NodeTransformer):
        def visit_Name(self, name: ast.Name) -> ast.Name:
            return ast.copy_location(ast.Name(CANDIDATE, name.ctx), name) if name.id == callee else name

    return ast.unparse(Rename().visit(node))


def _split_one(stmt: ast.Assert, callee: str, allowed: set[str]) -> SplitTest | None:
    name = ast.unparse(stmt)[:_NAME_CAP]
    test = stmt.test

    def make(expr: ast.expr, op: str, expected: Any = None, tolerance: float = 0.0) -> SplitTest | None:
        if not _evaluable(expr, callee, allowed):
            return None
        return SplitTest(name, _rename(expr, callee), op, expected, tolerance)

    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right, op = test.left, test.comparators[0], test.ops[0]
        if isinstance(op, (ast.Eq, ast.NotEq)):
            kind = "eq" if isinstance(op, ast.Eq) else "ne"
            for side, other in ((left, right), (right, left)):
                value = _literal(other)
                if value is not _NO:
                    return make(side, kind, value)
            return None
        if isinstance(op, ast.Is) and isinstance(right, ast.Constant) and right.value in (True, False, None):
            return make(left, "is", right.value)
        if isinstance(op, (ast.Lt, ast.LtE)):
            return _split_close(left, right, make)
        return None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return make(test.operand, "falsy")
    return make(test, "truthy")


def _split_close(left: ast.expr, right: ast.expr, make: Any) -> SplitTest | None:
    """`abs(expr - literal) < tol` (either order inside abs)."""
    tolerance = _literal(right)
    if (
        tolerance is _NO
        or not isinstance(tolerance, (int, float))
        or not (isinstance(left, ast.Call) and isinstance(left.func, ast.Name) and left.func.id == "abs")
        or len(left.args) != 1
        or not isinstance(left.args[0], ast.BinOp)
        or not isinstance(left.args[0].op, ast.Sub)
    ):
        return None
    diff = left.args[0]
    for side, other in ((diff.left, diff.right), (diff.right, diff.left)):
        value = _literal(other)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return make(side, "close", value, float(tolerance))
    return None


def _instrument(tree: ast.Module) -> AssertPlan:
    """Whole mode: every assert becomes a report to the judge, numbered by site."""
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
