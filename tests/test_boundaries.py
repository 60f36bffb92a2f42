"""Who may import whom: the plugin sees the service only through `sandbox.api` (the wire),
the service never imports the plugin, and examples and benchmarks never import the tests."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(folder: str, forbidden: Callable[[str], bool]) -> list[str]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    return [f"{path.relative_to(ROOT)}: {name}" for path in files for name in sorted(imported(path)) if forbidden(name)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize(
    ("folder", "rule", "forbidden"),
    [
        (
            "trainer_plugin",
            "only sandbox.api of the service",
            lambda n: _within(n, "sandbox") and not _within(n, "sandbox.api"),
        ),
        ("trainer_plugin", "not the score arithmetic", lambda n: _within(n, "rewards")),
        ("sandbox", "never the plugin", lambda n: _within(n, "trainer_plugin")),
        (
            "sandbox/api",
            "the wire only",
            lambda n: _within(n, "sandbox") and not _within(n, "sandbox.api") and not _within(n, "sandbox._proto"),
        ),
        ("examples", "never the tests", lambda n: _within(n, "tests")),
        ("bench", "never the tests", lambda n: _within(n, "tests")),
    ],
)
def test_imports_stay_within_bounds(folder: str, rule: str, forbidden: Callable[[str], bool]) -> None:
    assert offenders(folder, forbidden) == [], f"{folder} imports {rule}"
