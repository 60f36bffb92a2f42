"""Measure the code's seams: import cycles, imports across boundaries, the longest units.

    python3 -m bench.architecture            # figures for the tree it runs in
    python3 -m bench.architecture --root DIR # figures for another checkout (a baseline)

Every import statement counts, the ones inside functions too: a lazy import that only
breaks a cycle at import time is still a cycle in the design. The rules are the ones
docs/architecture.md states, one line each in `RULES`. The runner imports its modules by
their bare names (it runs from its own directory inside the sandbox); they are resolved
against the directories it puts on sys.path.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("sandbox", "rewards", "trainer_plugin", "examples", "bench")
LANGUAGE_FOLDERS = ("sandbox.python", "sandbox.sql", "sandbox.triton")
_RUNNER_DIRS = ("sandbox/runner", "sandbox/wire")  # on the runner's sys.path, by bare name

# (who, may import only modules under these prefixes among first-party ones, why)
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("sandbox.wire", ("sandbox.wire",), "the wire is stdlib only"),
    ("sandbox.runner", ("sandbox.runner", "sandbox.wire"), "the runner sees the wire, nothing else"),
    ("rewards", ("rewards", "sandbox.wire"), "rewards and the runner share only the wire"),
    ("trainer_plugin", ("trainer_plugin", "sandbox.api", "sandbox._proto"), "the plugin uses the proto face"),
    ("examples", ("sandbox", "rewards", "trainer_plugin"), "examples import the package, not tests"),
    ("bench", ("sandbox", "rewards", "trainer_plugin", "bench"), "benchmarks import the package, not tests"),
    ("sandbox", ("sandbox", "rewards"), "the service does not import the plugin"),
)


@dataclass(frozen=True)
class Unit:
    module: str
    name: str
    kind: str  # "function" or "class"
    lines: int


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources(root: Path) -> dict[str, ast.Module]:
    trees = {}
    for package in (*PACKAGES, "tests"):
        for path in sorted((root / package).rglob("*.py")):
            if "_proto" in path.parts:
                continue
            trees[_module_name(root, path)] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return trees


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` is or lies in."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def _type_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:` (annotations only)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def _imports(module: str, tree: ast.Module, known: set[str], runtime: bool = False) -> Iterator[str]:
    package = module if module in _packages(known) else module.rpartition(".")[0]
    bare_dirs = [d.replace("/", ".") for d in _RUNNER_DIRS]
    in_runner = any(module.startswith(d) for d in bare_dirs)
    skip = _type_only(tree) if runtime else set()
    for node in ast.walk(tree):
        names: list[str] = []
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from package import module` runs the package's __init__ too, but depends on
            # the module: only names that are not modules are the package's own
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            found = _resolve(name, known)
            if found is None and in_runner:  # a sibling module by its bare name, nothing else
                head = name.split(".")[0]
                found = next((f"{d}.{head}" for d in bare_dirs if f"{d}.{head}" in known), None)
            if found is not None and found != module:
                yield found


def _packages(known: set[str]) -> set[str]:
    return {m.rpartition(".")[0] for m in known if "." in m}


def graph(trees: dict[str, ast.Module], runtime: bool = False) -> dict[str, set[str]]:
    """Who imports whom; `runtime` leaves out the imports made for annotations only."""
    known = set(trees)
    return {module: set(_imports(module, tree, known, runtime)) for module, tree in trees.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def crossings(edges: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(importer, imported, rule broken) for every import a rule forbids."""
    broken = []
    for module, targets in sorted(edges.items()):
        if _under(module, "tests"):
            continue
        rule = next((r for r in RULES if _under(module, r[0])), None)
        for target in sorted(targets):
            if rule is not None and not any(_under(target, allowed) for allowed in rule[1]):
                broken.append((module, target, rule[2]))
            mine = next((f for f in LANGUAGE_FOLDERS if _under(module, f)), None)
            theirs = next((f for f in LANGUAGE_FOLDERS if _under(target, f)), None)
            if theirs is not None and mine is not None and theirs != mine:
                broken.append((module, target, "a language does not import another language"))
    return broken


def core_language_mentions(trees: dict[str, ast.Module], root: Path) -> dict[str, int]:
    """Core service modules (outside the language folders and the registry) that import a
    language folder: each is a file a new language would have to touch."""
    known = set(trees)
    found = {}
    for module, tree in trees.items():
        if not _under(module, "sandbox") or any(_under(module, f) for f in LANGUAGE_FOLDERS):
            continue
        if _under(module, "sandbox.runner") or _under(module, "sandbox.wire") or module == "sandbox.languages":
            continue
        count = sum(1 for t in _imports(module, tree, known) if any(_under(t, f) for f in LANGUAGE_FOLDERS))
        if count:
            found[module] = count
    return found


def units(trees: dict[str, ast.Module]) -> list[Unit]:
    out = []
    for module, tree in trees.items():
        if _under(module, "tests") or _under(module, "bench"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                out.append(Unit(module, node.name, kind, (node.end_lineno or node.lineno) - node.lineno + 1))
    return sorted(out, key=lambda u: -u.lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--show", type=int, default=5, help="how many of each list to print")
    args = parser.parse_args()
    root = Path(args.root)
    trees = _sources(root)
    edges = graph(trees)
    found_cycles = cycles({m: t for m, t in edges.items() if not _under(m, "tests")})
    runtime = graph(trees, runtime=True)
    runtime_cycles = cycles({m: t for m, t in runtime.items() if not _under(m, "tests")})
    broken = crossings(edges)
    mentions = core_language_mentions(trees, root)
    all_units = units(trees)
    print(f"tree: {root}")
    print(f"modules: {sum(1 for m in trees if not _under(m, 'tests'))} (tests aside)")
    print(f"import cycles: {len(found_cycles)} ({len(runtime_cycles)} without annotation-only imports)")
    for component in found_cycles[: args.show]:
        print("   ", " <-> ".join(component))
    print(f"imports across a boundary: {len(broken)}")
    for module, target, why in broken[: args.show * 4]:
        print(f"    {module} -> {target}  ({why})")
    print(f"core modules that import a language folder: {len(mentions)}")
    for module, count in sorted(mentions.items()):
        print(f"    {module} ({count} imports)")
    for kind in ("function", "class"):
        longest = [u for u in all_units if u.kind == kind][: args.show]
        print(f"longest {kind}s: " + ", ".join(f"{u.module}.{u.name} {u.lines}" for u in longest))


if __name__ == "__main__":
    main()
