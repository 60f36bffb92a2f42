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

Reproducible: every random choice comes from `random.Random` seeded with the seed, the
variant's index and the table's name (string seeds hash the same in every process).
"""

from __future__ import annotations

import datetime
import decimal
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_CATEGORICAL_MAX = 12  # at most this many distinct values (and at most a third of the rows)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
_MAX_DECIMALS = 6


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
            rng = random.Random(f"rft-variant:{seed}:{index}:{name}")  # noqa: S311 - reproducible, not secret
            out[name] = _table_rows(table, self.profiles[name], rng, index)
        for name in self.order:
            check()
            rng = random.Random(f"rft-variant-fk:{seed}:{index}:{name}")  # noqa: S311
            out[name] = _resolve(self.tables[name], self.foreign[name], self.tables, out, rng)
        return {name: [tuple(row) for row in rows] for name, rows in out.items()}


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
        column.decimals = max(_decimals(c) for c in present)
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


def _changed(column: _Column, value: Any, rng: random.Random) -> Any:
    """Another value of the column's type (maybe equal by chance: that is only a lost change)."""
    if column.categorical or column.kind == "ordinal":
        others = [v for v in column.values if v != value]
        return rng.choice(others) if others else value
    if column.kind == "bool":
        return not value
    if column.kind == "int":
        if rng.random() < 0.5 and column.high > column.low:
            return rng.randint(column.low, column.high)
        return value + rng.choice((-1, 1)) * rng.randint(1, 3)
    if column.kind == "real":
        drawn = rng.uniform(column.low, column.high) if rng.random() < 0.5 else value * rng.uniform(0.9, 1.1)
        return float(round(drawn, column.decimals))
    if column.kind == "date":
        return _shift_date(value, rng.choice((-1, 1)) * rng.randint(1, 400))
    if column.kind == "day":
        try:
            return value + datetime.timedelta(days=rng.choice((-1, 1)) * rng.randint(1, 400))
        except OverflowError:
            return value
    if column.kind == "text":
        others = [v for v in column.values if v != value]
        if others:
            return rng.choice(others)
        return _mutated(value, rng)
    return value


def _shift_date(text: str, days: int) -> str:
    try:
        day = datetime.date.fromisoformat(text[:10]) + datetime.timedelta(days=days)
    except (ValueError, OverflowError):
        return text
    return day.isoformat() + text[10:]


def _mutated(text: str, rng: random.Random) -> str:
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    if not text:
        return letter
    position = rng.randrange(len(text))
    return text[:position] + (letter if text[position] != letter else "z") + text[position + 1 :]


# ---------------------------------------------------------------- rows of one table


def _table_rows(table: TableData, columns: list[_Column], rng: random.Random, index: int) -> list[list[Any]]:
    rows = [list(row) for row in table.rows]
    if len(rows) >= 2:
        drop = rng.uniform(0.05, 0.35)
        kept = [row for row in rows if rng.random() >= drop]
        if len(kept) == len(rows):
            kept.pop(rng.randrange(len(kept)))
        rows = kept or [rows[rng.randrange(len(rows))]]
    change = rng.uniform(0.1, 0.35)
    blank = 0.06 if index % 2 else 0.0  # every other variant gets a few NULLs where allowed
    mutable = [p for p, c in enumerate(columns) if c.kind not in ("key", "fixed")]
    nullable = [p for p, c in enumerate(columns) if c.kind != "key" and table.nullable[p]]
    for row in rows:
        for p in mutable:
            if row[p] is not None and rng.random() < change:
                row[p] = _changed(columns[p], row[p], rng)
        for p in nullable:
            if blank and rng.random() < blank:
                row[p] = None
    return rows + _duplicates(table, rows, rng)


def _duplicates(table: TableData, rows: list[list[Any]], rng: random.Random) -> list[list[Any]]:
    if not rows or not table.may_duplicate:
        return []
    fresh = _fresh_positions(table)
    if fresh is None:
        return []
    chance = rng.uniform(0.05, 0.25)
    chosen = [row for row in rows if rng.random() < chance] or [rng.choice(rows)]
    taken = {p: {row[p] for row in rows} for p in fresh}
    numeric = {p: all(type(v) is int for v in taken[p] if v is not None) for p in fresh}
    counters = {p: max((v for v in taken[p] if type(v) is int), default=0) for p in fresh}
    copies = []
    for row in chosen:
        copy = list(row)
        for p in fresh:
            if numeric[p]:
                counters[p] += rng.randint(2, 9)  # gaps: MAX(id) no longer equals COUNT(*)
                copy[p] = counters[p]
            else:
                copy[p] = _fresh_text(str(row[p]), taken[p])
            taken[p].add(copy[p])
        copies.append(copy)
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
    rng: random.Random,
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
        keys = list(dict.fromkeys(tuple(row[p] for p in positions) for row in out[fk.parent]))
        keys = [k for k in keys if None not in k]
        movable = not keyed & set(fk.columns)
        nullable = all(table.nullable[p] for p in fk.columns)
        present = set(keys)
        survivors = []
        for row in rows:
            value = tuple(row[p] for p in fk.columns)
            if None in value:
                survivors.append(row)
                continue
            if value not in present or (movable and keys and rng.random() < change):
                if keys:
                    value = rng.choice(keys)
                elif nullable:
                    value = (None,) * len(value)
                else:
                    continue  # nothing to point at: the row goes
                for p, v in zip(fk.columns, value, strict=True):
                    row[p] = v
            survivors.append(row)
        rows = survivors
        if fk.parent == table.name:
            out[table.name] = rows
    return rows
