"""The languages this service scores: one line each.

A language is one folder (`sandbox/<name>/`, with a `Language` in its `language.py`)
plus its line here, its spec in the proto and, if it needs one, a runner mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sandbox.language import Language
from sandbox.python.language import PythonLanguage
from sandbox.sql.language import SqlLanguage
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry
from sandbox.triton.language import TritonLanguage


def standard_languages(sql: SqlContext | None = None) -> tuple[Language, ...]:
    """Fresh instances (a language holds its service's state); `sql`: the registered
    databases SQL tasks may name."""
    return (
        PythonLanguage(),
        SqlLanguage(sql),
        TritonLanguage(),
    )


def standard_languages_with(databases: Sequence[str], variants_cache: Path | None = None) -> tuple[Language, ...]:
    """The standard languages, SQL with `databases` registered (`NAME=PATH` specs, as the
    command line's `--database` gives them). Raises ValueError naming the bad spec."""
    return standard_languages(sql=SqlContext(registry=Registry.from_specs(databases, cache_dir=variants_cache)))
