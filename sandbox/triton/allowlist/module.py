"""The candidate module's top level, sorted: imports, constants, kernels, host functions, classes.

Nothing is judged here (toplevel.py does that); this only says what each top-level name
is, so that the rest of the checker can look names up.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from sandbox.triton.allowlist.values import Value

FuncNode = ast.FunctionDef | ast.AsyncFunctionDef
JIT_NAMES = frozenset({"triton.jit", "triton.runtime.jit", "triton.runtime.jit.jit"})
MODULE_BASES = frozenset({"torch.nn.Module", "torch.nn.modules.module.Module"})
FUNCTION_BASES = frozenset({"torch.autograd.Function", "torch.autograd.function.Function"})


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Each name a top-level import binds, to the dotted path it stands for (allowed or not)."""
    names: dict[str, str] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                names[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(stmt, ast.ImportFrom) and stmt.module and not stmt.level:
            for alias in stmt.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
    return names


def is_static(func: FuncNode) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in func.decorator_list)


def dotted(node: ast.AST, imports: dict[str, str]) -> str | None:
    """`tl.constexpr` -> 'triton.language.constexpr' through the imports; calls name their callee."""
    if isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in imports:
        return None
    return ".".join([imports[node.id], *reversed(parts)])


@dataclass
class ClassModel:
    """A class of the candidate: what it derives from, its methods, and what `__init__` stores in it."""

    node: ast.ClassDef
    kind: str  # "module" (nn.Module), "function" (autograd Function) or "other"
    local_bases: list[str]
    methods: dict[str, FuncNode]
    constants: dict[str, ast.expr]
    attrs: dict[str, Value] = field(default_factory=dict)  # filled while analysing __init__

    @property
    def name(self) -> str:
        return self.node.name


class ModuleModel:
    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.imports = imported_names(tree)
        self.constants: dict[str, Value] = {}  # typed by toplevel.py, in order
        self.class_constants: dict[tuple[str, str], Value] = {}  # likewise
        self.kernels: dict[str, FuncNode] = {}
        self.functions: dict[str, FuncNode] = {}
        self.classes: dict[str, ClassModel] = {}
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self._add_function(stmt)
            elif isinstance(stmt, ast.ClassDef):
                self._add_class(stmt)

    def is_jit(self, decorator: ast.AST) -> bool:
        return dotted(decorator, self.imports) in JIT_NAMES

    def _add_function(self, stmt: FuncNode) -> None:
        for table in (self.kernels, self.functions, self.classes):
            table.pop(stmt.name, None)  # the last definition wins, as in Python
        if any(self.is_jit(d) for d in stmt.decorator_list):
            self.kernels[stmt.name] = stmt
        else:
            self.functions[stmt.name] = stmt

    def _add_class(self, stmt: ast.ClassDef) -> None:
        for table in (self.kernels, self.functions):
            table.pop(stmt.name, None)
        local = [b.id for b in stmt.bases if isinstance(b, ast.Name) and b.id in self.classes]
        kinds = {self.classes[b].kind for b in local}
        for base in stmt.bases:
            path = dotted(base, self.imports)
            if path in MODULE_BASES:
                kinds.add("module")
            elif path in FUNCTION_BASES:
                kinds.add("function")
        kind = kinds.pop() if len(kinds) == 1 else "other"
        methods = {s.name: s for s in stmt.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
        constants = {
            target.id: s.value
            for s in stmt.body
            if isinstance(s, ast.Assign)
            for target in s.targets
            if isinstance(target, ast.Name)
        }
        self.classes[stmt.name] = ClassModel(stmt, kind, local, methods, constants)

    def method(self, cls: ClassModel, name: str) -> tuple[ClassModel, FuncNode] | None:
        """A method through the class's local bases (depth first, as Python's MRO for these shapes)."""
        seen: set[str] = set()
        stack = [cls]
        while stack:
            current = stack.pop(0)
            if current.name in seen:
                continue
            seen.add(current.name)
            if name in current.methods:
                return current, current.methods[name]
            stack.extend(self.classes[b] for b in current.local_bases if b in self.classes)
        return None

    def lineage(self, cls: ClassModel) -> list[ClassModel]:
        out, stack = [], [cls]
        while stack:
            current = stack.pop(0)
            if current not in out:
                out.append(current)
                stack.extend(self.classes[b] for b in current.local_bases if b in self.classes)
        return out
