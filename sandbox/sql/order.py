"""The gold's sort keys, derived on the trusted side, so ties under its ORDER BY may be permuted.

A gold `SELECT name FROM singer ORDER BY age` leaves the order of two singers of the same age
to the engine; a candidate that breaks the tie the other way is just as right. To tell a tie
from a wrong order the scorer needs each gold row's sort-key values (`rewards.sql.SortKeys`):

* keys that are output columns (`ORDER BY 2`, an output's alias or name) are read from the
  gold's own result: nothing more runs;
* other keys (`ORDER BY age`, `ORDER BY COUNT(*)`) are appended to the gold's outermost
  SELECT as extra output columns, and that query runs once per database, cached like the
  gold itself;
* under LIMIT (and OFFSET) that query also reads past the cut-off, without the OFFSET and
  up to `_PAST_CUT` rows further, so the rows tied with the gold's first and last are
  known: a candidate may take any of them (the gold's choice among them was the engine's).

Where the keys cannot be derived — an expression key of a set operation or of a DISTINCT
query (appending it would change the rows), a LIMIT that is not a literal, FETCH, an
ambiguous name — there is no plan and the order stays strict: never more credit than the
keys prove. The scorer also checks that the keys describe the gold's own rows.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlglot import exp

from rewards.sql import ResultSet, SortKeys
from sandbox.sql.gate import top_level_query

_PAST_CUT = 1000  # rows read past a LIMIT to find the ones tied with the last kept row
_MAX_ROWS = 10_000  # the fetch cap of a SQL job (sandbox.sql.plan.MAX_ROWS)
_KEY_ALIAS = "rft_sort_key_"


@dataclass(frozen=True)
class OrderPlan:
    """How to get the gold's sort keys. `keys[j]` is the column holding key j: an output
    column (>= 0) or the j-th appended one (-1 - j). `query` is None when the gold's own
    result holds every key and nothing limits it; else it runs on every database."""

    keys: tuple[int, ...]
    query: str | None = None
    appended: int = 0
    offset: int = 0


def _output_names(node: exp.Expr) -> list[str | None] | None:
    """The outermost SELECT's output names (None for one without a plain name); None
    when a star makes them unknown."""
    while isinstance(node, exp.SetOperation):
        node = node.this
    while isinstance(node, exp.Subquery):
        node = node.this
    if not isinstance(node, exp.Select):
        return None
    names: list[str | None] = []
    for projection in node.expressions:
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            return None
        name = projection.alias_or_name if isinstance(projection, (exp.Alias, exp.Column)) else ""
        names.append(name.lower() if name else None)
    return names


def _output_index(key: exp.Expr, names: list[str | None] | None) -> int | None:
    """The output column an ORDER BY item names, by position or by name; None otherwise."""
    if isinstance(key, exp.Literal) and key.is_int:
        position = int(key.name)
        if position < 1 or (names is not None and position > len(names)):
            raise ValueError("ORDER BY position out of range")
        return position - 1
    if isinstance(key, exp.Column) and not key.table and names is not None:
        matches = [i for i, name in enumerate(names) if name == key.name.lower()]
        if len(matches) > 1:
            raise ValueError("ORDER BY names more than one output column")
        return matches[0] if matches else None
    return None


def _literal_int(node: exp.Expr | None) -> int | None:
    value = node.args.get("expression") if node is not None else None
    if isinstance(value, exp.Literal) and value.is_int:
        return int(value.name)
    return None


@functools.lru_cache(maxsize=4096)
def plan_order(gold_sql: str, dialect: str) -> OrderPlan | None:
    """How to derive the sort keys of a gold with a top-level ORDER BY; None if they cannot
    be derived (then the order is strict) or it has no ORDER BY."""
    try:
        node = top_level_query(gold_sql, dialect)
    except ValueError:
        return None
    order = node.args.get("order")
    if order is None or not isinstance(node, (exp.Select, exp.SetOperation)) or node.args.get("fetch"):
        return None
    limit, offset = node.args.get("limit"), node.args.get("offset")
    if isinstance(limit, exp.Fetch):
        return None
    count, skip = _literal_int(limit), _literal_int(offset) if offset is not None else 0
    if (limit is not None and count is None) or skip is None:
        return None
    names = _output_names(node)
    keys: list[int] = []
    extra: list[exp.Expr] = []
    for item in order.expressions:
        key = item.this if isinstance(item, exp.Ordered) else item
        try:
            index = _output_index(key, names)
        except ValueError:
            return None
        if index is None:
            if not isinstance(node, exp.Select) or node.args.get("distinct"):
                return None  # an extra column would change a DISTINCT's or a set operation's rows
            extra.append(exp.alias_(key.copy(), f"{_KEY_ALIAS}{len(extra)}"))
            index = -len(extra)
        keys.append(index)
    if not extra and limit is None and not skip:
        return OrderPlan(tuple(keys))
    query = node.copy()
    if extra:
        query.select(*extra, copy=False)
    if limit is not None:
        query.set("limit", exp.Limit(expression=exp.Literal.number(min(skip + count + _PAST_CUT, _MAX_ROWS))))
    query.set("offset", None)
    return OrderPlan(tuple(keys), query.sql(dialect=dialect), len(extra), skip)


def sort_keys(plan: OrderPlan, gold: ResultSet, keyed: ResultSet | None) -> SortKeys | None:
    """The gold's sort keys on one database: from its own result, or from `keyed` (the
    plan's query there; None when it did not run, and then there are none)."""
    if plan.query is None:
        return SortKeys(gold.rows, tuple(tuple(row[k] for k in plan.keys) for row in gold.rows))
    if keyed is None:
        return None
    width = len(keyed.columns) - plan.appended
    if width != len(gold.columns) or any(len(row) != len(keyed.columns) for row in keyed.rows):
        return None
    columns = [k if k >= 0 else width + (-1 - k) for k in plan.keys]
    rows = tuple(tuple(row[:width]) for row in keyed.rows)
    keys = tuple(tuple(row[c] for c in columns) for row in keyed.rows)
    return SortKeys(rows, keys, plan.offset)
