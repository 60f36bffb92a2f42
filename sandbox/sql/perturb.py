"""Perturbed copies of a database's rows: the data side of automatic variants.

Engine-neutral and pure: the engine adapters in `sandbox.sql.variants` read each table's
rows and constraints into `TableData` and write `perturb`'s rows back. The aim is that of
test-suite accuracy (Zhong et al. 2020): neighbour databases on which a query that is
right for the wrong reason (a literal, a coincidence of the base's data) gives a
different answer than the gold query does. So each variant, per table:

* drops some rows (and always at least one of two or more),
* perturbs some values within their column's type: integers shifted or redrawn within
  the column's range, reals scaled or redrawn, ISO dates shifted, text replaced by
  another of the column's own values (or mutated when it has only one), a few NULLs
  where the column allows them; categorical columns (few distinct values) only get
  their own values,
* duplicates some rows: exact copies where no key forbids it (a missing DISTINCT shows),
  fresh keys where a PRIMARY KEY or UNIQUE constraint does (fresh integers leave gaps, so
  `MAX(id)` stops equalling `COUNT(*)`); a table whose keys cannot be made fresh gets none.

Key columns (PRIMARY KEY, UNIQUE) keep their values. Foreign keys stay resolvable: a
child value whose parent row was dropped is re-pointed at a surviving parent key, and
child values are perturbed only to other existing parent keys. Undeclared references
are inferred conservatively (a column named `...id` whose values all are keys of one
other table's single-column key) and handled the same way.

Reproducible: every random choice comes from a numpy `Generator` seeded with a hash of
the seed, the variant's index and the table's name (the same in every process, for one
numpy version: the cache key names it). Draws are made a column at a time, and only the
cells that change are touched, so a variant costs about its changes, not every cell.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_CATEGORICAL_MAX = 12  # at most this many distinct values (and at most a third of the rows)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_MAX_DECIMALS = 6
_INT64_SAFE = 2**62  # integer columns within this range are redrawn with numpy; others only shifted
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what SQLite and DuckDB store
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[int, ...]  # positions in the child's columns
    parent: str
    parent_columns: tuple[str, ...]  # names in the parent; () means its primary key


@dataclass
class TableData:
    name: str
    columns: list[str]  # the columns rows are read and written with (generated ones excluded)
    nullable: list[bool]
    unique: list[tuple[int, ...]]  # positions of the primary key and of each UNIQUE constraint
    foreign: list[ForeignKey]
    rows: list[tuple[Any, ...]]
    may_duplicate: bool = True  # False when some uniqueness rule is not known column by column
    primary: tuple[int, ...] = ()


@dataclass
class _Column:
    kind: str  # key | int | real | date | text | bool | ordinal | fixed
    values: list[Any] = field(default_factory=list)  # distinct non-NULL values, first-seen order
    low: Any = None
    high: Any = None
    decimals: int = 0
    categorical: bool = False


class Perturber:
    """The variants of one database's rows; what they share (column profiles, inferred
    references) is worked out once, from the base's rows."""

    def __init__(self, tables: dict[str, TableData]) -> None:
        self.tables = tables
        self.foreign = {name: table.foreign + _inferred(table, tables) for name, table in tables.items()}
        self.profiles = {name: _profiles(table, self.foreign[name], tables) for name, table in tables.items()}
        self.order = _parents_first(tables, self.foreign)

    def variant(self, seed: int, index: int, check: Callable[[], None]) -> dict[str, list[tuple[Any, ...]]]:
        """Rows of variant `index` for every table. `check` is called between pieces of
        work (it raises when the build's time budget is spent)."""
        out: dict[str, list[list[Any]]] = {}
        for name, table in self.tables.items():
            check()
            out[name] = _table_rows(table, self.profiles[name], _rng("rows", seed, index, name), index)
        for name in self.order:
            check()
            rng = _rng("references", seed, index, name)
            out[name] = _resolve(self.tables[name], self.foreign[name], self.tables, out, rng)
        return {name: [tuple(row) for row in rows] for name, rows in out.items()}


def _rng(*parts: Any) -> np.random.Generator:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


# ---------------------------------------------------------------- columns


def _profiles(table: TableData, foreign: list[ForeignKey], tables: dict[str, TableData]) -> list[_Column]:
    keys = {p for unique in table.unique for p in unique} | {p for fk in foreign for p in fk.columns}
    referenced = {
        table.columns.index(c)
        for other in tables.values()
        for fk in other.foreign
        if fk.parent == table.name
        for c in fk.parent_columns
        if c in table.columns
    }
    return [
        _Column("key") if p in keys | referenced else _profile([row[p] for row in table.rows])
        for p in range(len(table.columns))
    ]


def _profile(cells: list[Any]) -> _Column:
    present = [c for c in cells if c is not None]
    distinct = list(dict.fromkeys(present))
    if not present:
        return _Column("fixed")
    types = {type(c) for c in present}
    categorical = len(distinct) <= _CATEGORICAL_MAX and len(distinct) * 3 <= len(present)
    column = _Column("fixed", distinct, categorical=categorical)
    if types == {bool}:
        column.kind = "bool"
    elif types == {int}:
        column.kind, column.low, column.high = "int", min(present), max(present)
    elif types <= {int, float} and all(math.isfinite(c) for c in present):
        column.kind, column.low, column.high = "real", min(present), max(present)
        column.decimals = max(_decimals(c) for c in present[:2000])  # a sample says how they are rounded
    elif types == {str}:
        column.kind = "date" if all(_DATE.fullmatch(c) for c in present) else "text"
    elif types <= {datetime.date, datetime.datetime}:
        column.kind = "day" if len(types) == 1 else "fixed"
    elif types == {decimal.Decimal}:
        column.kind = "ordinal"  # redrawn from its own values: stays within the column's precision
    return column


def _decimals(value: float | int) -> int:
    if isinstance(value, int):
        return 0
    text = repr(value)
    if "e" in text or "E" in text:
        return _MAX_DECIMALS
    return min(len(text.partition(".")[2].rstrip("0")), _MAX_DECIMALS)


def _changed(column: _Column, values: list[Any], rng: np.random.Generator) -> list[Any]:
    """Other values of the column's type for `values` (None for a NULL; a value may come
    back equal by chance: that is only a lost change)."""
    count = len(values)
    if column.categorical or (column.kind in ("ordinal", "text") and len(column.values) > 1):
        draws = rng.integers(0, len(column.values), count).tolist()
        return [None if v is None else column.values[j] for v, j in zip(values, draws, strict=True)]
    if column.kind == "ordinal":
        return values
    if column.kind == "bool":
        return [None if v is None else not v for v in values]
    if column.kind == "text":
        return [None if v is None else _mutated(v, rng) for v in values]
    days = (rng.choice((-1, 1), count) * rng.integers(1, 401, count)).tolist()
    if column.kind == "date":
        return [None if v is None else _shift_date(v, d) for v, d in zip(values, days, strict=True)]
    if column.kind == "day":
        return [None if v is None else _shift_day(v, d) for v, d in zip(values, days, strict=True)]
    redraw = (rng.random(count) < 0.5).tolist() if column.high > column.low else [False] * count
    if column.kind == "int":
        steps = (rng.choice((-1, 1), count) * rng.integers(1, 4, count)).tolist()
        if -_INT64_SAFE < column.low and column.high < _INT64_SAFE:
            drawn = rng.integers(column.low, column.high + 1, count).tolist()
        else:
            redraw, drawn = [False] * count, [0] * count
        return [
            None if v is None else d if r else min(max(v + s, _INT64_MIN), _INT64_MAX)
            for v, r, d, s in zip(values, redraw, drawn, steps, strict=True)
        ]
    if column.kind == "real":
        drawn = rng.uniform(column.low, column.high, count)
        scaled = np.array([0.0 if v is None else float(v) for v in values]) * rng.uniform(0.9, 1.1, count)
        chosen = np.round(np.where(redraw, drawn, scaled), column.decimals).tolist()
        return [None if v is None else c for v, c in zip(values, chosen, strict=True)]
    return values


def _shift_date(text: str, days: int) -> str:
    try:
        day = datetime.date.fromisoformat(text[:10]) + datetime.timedelta(days=days)
    except (ValueError, OverflowError):
        return text
    return day.isoformat() + text[10:]


def _shift_day(value: datetime.date, days: int) -> datetime.date:
    try:
        return value + datetime.timedelta(days=days)
    except OverflowError:
        return value


def _mutated(text: str, rng: np.random.Generator) -> str:
    letter = _LETTERS[int(rng.integers(len(_LETTERS)))]
    if not text:
        return letter
    position = int(rng.integers(len(text)))
    return text[:position] + (letter if text[position] != letter else "z") + text[position + 1 :]


# ---------------------------------------------------------------- rows of one table


def _some(rng: np.random.Generator, count: int, share: float) -> list[int]:
    """Each of the positions 0..count-1 with probability `share`, drawn at once."""
    return np.flatnonzero(rng.random(count) < share).tolist() if count else []


def _table_rows(table: TableData, columns: list[_Column], rng: np.random.Generator, index: int) -> list[list[Any]]:
    base = table.rows
    gone: set[int] = set()
    if len(base) >= 2:
        gone = set(_some(rng, len(base), rng.uniform(0.05, 0.35))) or {int(rng.integers(len(base)))}
    rows = [list(row) for i, row in enumerate(base) if i not in gone]
    if base and not rows:
        rows = [list(base[int(rng.integers(len(base)))])]
    change = rng.uniform(0.1, 0.35)
    for p, column in enumerate(columns):
        if column.kind in ("key", "fixed"):
            continue
        chosen = _some(rng, len(rows), change)
        for i, value in zip(chosen, _changed(column, [rows[i][p] for i in chosen], rng), strict=True):
            rows[i][p] = value
    if index % 2:  # every other variant gets a few NULLs where the column allows them
        for p, column in enumerate(columns):
            if column.kind != "key" and table.nullable[p]:
                for i in _some(rng, len(rows), 0.06):
                    rows[i][p] = None
    return rows + _duplicates(table, rows, rng)


def _duplicates(table: TableData, rows: list[list[Any]], rng: np.random.Generator) -> list[list[Any]]:
    if not rows or not table.may_duplicate:
        return []
    fresh = _fresh_positions(table)
    if fresh is None:
        return []
    chosen = _some(rng, len(rows), rng.uniform(0.05, 0.25)) or [int(rng.integers(len(rows)))]
    copies = [list(rows[i]) for i in chosen]
    for p in fresh:
        taken = {row[p] for row in rows}
        if all(type(v) is int for v in taken if v is not None):
            top = max((v for v in taken if v is not None), default=0)
            if top > _INT64_MAX - 10 * len(copies):
                return []  # no room for fresh keys above the largest
            gaps = rng.integers(2, 10, len(copies)).tolist()  # gaps: MAX(id) no longer equals COUNT(*)
            for copy, gap in zip(copies, gaps, strict=True):
                top += gap
                copy[p] = top
        else:
            for copy in copies:
                copy[p] = _fresh_text(str(copy[p]), taken)
                taken.add(copy[p])
    return copies


def _fresh_positions(table: TableData) -> list[int] | None:
    """One column per uniqueness rule to give copies new values in, or None if some rule
    has none that can take a fresh value (a float or blob key, a key made of references)."""
    references = {p for fk in table.foreign for p in fk.columns}
    chosen: list[int] = []
    for unique in table.unique:
        if any(p in chosen for p in unique):
            continue
        usable = [p for p in unique if p not in references and _freshable([row[p] for row in table.rows])]
        if not usable:
            return None
        chosen.append(usable[0])
    return chosen


def _freshable(cells: list[Any]) -> bool:
    kinds = {type(c) for c in cells if c is not None}
    return kinds <= {int} or kinds <= {str}


def _fresh_text(value: str, taken: set[Any]) -> str:
    number = 2
    while f"{value} ({number})" in taken:
        number += 1
    return f"{value} ({number})"


# ---------------------------------------------------------------- references


def _inferred(table: TableData, tables: dict[str, TableData]) -> list[ForeignKey]:
    """Undeclared references: `...id` columns whose values are all keys of one other table."""
    declared = {p for fk in table.foreign for p in fk.columns}
    keyed = {p for unique in table.unique for p in unique}
    found = []
    for p, name in enumerate(table.columns):
        if p in declared or p in keyed or not name.lower().endswith("id"):
            continue
        values = {row[p] for row in table.rows if row[p] is not None}
        if not values or not _freshable(list(values)):
            continue
        parents = []
        for other in tables.values():
            if other.name == table.name and name.lower() in ("id", f"{table.name.lower()}_id"):
                continue
            for key in other.unique:
                if len(key) == 1 and values <= {row[key[0]] for row in other.rows}:
                    parents.append((other, other.columns[key[0]]))
        stem = name.lower().removesuffix("id").rstrip("_")
        named = [(t, c) for t, c in parents if stem and t.name.lower().rstrip("s") == stem.rstrip("s")]
        pick = named or (parents if len(parents) == 1 else [])
        if pick:
            found.append(ForeignKey((p,), pick[0][0].name, (pick[0][1],)))
    return found


def _parents_first(tables: dict[str, TableData], foreign: dict[str, list[ForeignKey]]) -> list[str]:
    """Tables ordered so a parent comes before its children; tables in a cycle at the end."""
    waiting = {n: {fk.parent for fk in foreign[n] if fk.parent != n and fk.parent in tables} for n in tables}
    order: list[str] = []
    while True:
        ready = [name for name, parents in waiting.items() if not parents]
        if not ready:
            break
        for name in ready:
            order.append(name)
            del waiting[name]
        for parents in waiting.values():
            parents.difference_update(ready)
    return order + sorted(waiting)


def _resolve(
    table: TableData,
    foreign: list[ForeignKey],
    tables: dict[str, TableData],
    out: dict[str, list[list[Any]]],
    rng: np.random.Generator,
) -> list[list[Any]]:
    rows = out[table.name]
    keyed = {p for unique in table.unique for p in unique}
    change = rng.uniform(0.1, 0.35)
    for fk in foreign:
        parent = tables.get(fk.parent)
        if parent is None:
            continue
        names = fk.parent_columns or tuple(parent.columns[p] for p in parent.primary)
        if not names or any(n not in parent.columns for n in names) or len(names) != len(fk.columns):
            continue
        positions = [parent.columns.index(n) for n in names]
        child = fk.columns
        movable = not keyed & set(child)  # values of a key column stay (no duplicate keys)
        if len(child) == 1:
            rows = _resolve_one(
                rows, child[0], [row[positions[0]] for row in out[fk.parent]], table, movable, change, rng
            )
        else:
            rows = _resolve_many(rows, child, positions, out[fk.parent], table, movable, change, rng)
        if fk.parent == table.name:
            out[table.name] = rows
    return rows


def _resolve_one(
    rows: list[list[Any]],
    column: int,
    parent_values: list[Any],
    table: TableData,
    movable: bool,
    change: float,
    rng: np.random.Generator,
) -> list[list[Any]]:
    """A one-column reference: orphans re-pointed, some values moved to other parent keys."""
    keys = [k for k in dict.fromkeys(parent_values) if k is not None]
    present = set(keys)
    moved = {i for i, row in enumerate(rows) if row[column] is not None and row[column] not in present}
    if keys and movable:
        moved.update(i for i in _some(rng, len(rows), change) if rows[i][column] is not None)
    if not keys and not table.nullable[column]:
        return [row for i, row in enumerate(rows) if i not in moved]  # nothing to point at: they go
    picks = rng.integers(0, len(keys), len(moved)).tolist() if keys else [None] * len(moved)
    for i, pick in zip(sorted(moved), picks, strict=True):
        rows[i][column] = keys[pick] if pick is not None else None
    return rows


def _resolve_many(
    rows: list[list[Any]],
    child: tuple[int, ...],
    positions: list[int],
    parent_rows: list[list[Any]],
    table: TableData,
    movable: bool,
    change: float,
    rng: np.random.Generator,
) -> list[list[Any]]:
    """A composite reference: the same, a tuple of values at a time."""
    keys = [k for k in dict.fromkeys(tuple(row[p] for p in positions) for row in parent_rows) if None not in k]
    present = set(keys)
    moved = {
        i for i, row in enumerate(rows) if None not in (value := tuple(row[p] for p in child)) and value not in present
    }
    if keys and movable:
        moved.update(i for i in _some(rng, len(rows), change) if all(rows[i][p] is not None for p in child))
    if not keys and not all(table.nullable[p] for p in child):
        return [row for i, row in enumerate(rows) if i not in moved]
    picks = rng.integers(0, len(keys), len(moved)).tolist() if keys else [None] * len(moved)
    for i, pick in zip(sorted(moved), picks, strict=True):
        value = keys[pick] if pick is not None else (None,) * len(child)
        for p, v in zip(child, value, strict=True):
            rows[i][p] = v
    return rows
