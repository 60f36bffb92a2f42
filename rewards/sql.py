"""Score a SQL candidate by comparing the result sets it produced with the gold ones.

Pure and trusted: nothing here runs SQL or talks to a database. The result sets were
fetched already (by trusted code, from a database the candidate ran on); this module
only decides whether they are the same answer, and how much partial credit a wrong one
earns. Published text-to-SQL scorers are full of holes a policy learns to exploit, so
every rule below closes one:

* Columns are aligned by value, never by name or position: ``SELECT b AS y, a`` answers
  ``SELECT a, b``. The aligner finds a column permutation whose rows match; it prunes
  with per-column value signatures instead of trying every permutation, and treats
  identical columns as interchangeable so ``SELECT a, a, a`` costs nothing extra.
* Rows are a multiset (duplicates count: a missing DISTINCT is wrong) unless the task
  says order matters, then a sequence.
* The gold's column types decide how numbers compare. A gold column of integers
  (integers, booleans, Decimals without a fractional scale: COUNT, SUM of integers, ids)
  compares value-exactly: the candidate's 3 or 3.0 is 3, its 3.003 is not, whatever the
  tolerance (``COUNT(*) + 0.003`` must not pass for a count). A gold column holding a
  float (or a Decimal with a fractional scale: PostgreSQL's AVG and numeric(p, s)) is a
  float column: its numbers, integers included, compare with the tolerance,
  ``|a-b| <= max(rel_tol*max(|a|,|b|), abs_tol)``, so an average that is integral on one
  engine and one ulp off in the candidate's arithmetic still matches. The tolerance is
  folded into the multiset logic exactly: rows are bucketed by runs of mutually
  reachable values (so two values either side of a rounding boundary still meet) and
  matched by maximum bipartite matching, not by sorting or rounding.
* NULL equals NULL (these are results, not SQL predicates); True equals 1 (SQLite has
  no booleans); '1' never equals 1 and str never equals bytes; NaN equals NaN; -0.0
  equals 0.0.
* Under the gold's ORDER BY, rows whose sort keys are equal may come in any order:
  given the gold's sort keys (``SortKeys``, derived on the trusted side by
  ``sandbox/sql/order.py``) the rows form tie groups, and the candidate's rows must
  hold each group's rows at that group's positions, in any order among themselves.
  A group cut by the gold's LIMIT (or OFFSET) may be filled with any of its rows.
  Without sort keys, or with keys that do not describe the gold's rows, the order is
  the gold's, strictly: never more credit than the keys prove.
* An error is never an empty result, and a truncated result (the fetch cap was hit)
  never matches: we did not see the whole answer.
* Empty results prove nothing: a query that always returns no rows "matches" every
  database whose gold answer is empty. A database whose gold result is empty is
  uninformative, so the database that decides correctness (the "reference") is the
  base (#0) unless its gold is empty, then the first variant whose gold has rows. If
  every gold result is empty no candidate can earn more than ``base_only``, and an
  empty candidate result always carries an ``empty_result`` warning.
"""

from __future__ import annotations

import decimal
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from rewards.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from rewards.model import Finding, Severity, Status, TestResult, Verdict, dedupe
from sandbox.wire.messages import Kind

# A non-finite float becomes a token: exact, and never part of tolerance arithmetic.
_NAN = ("$float", "nan")
_INF = ("$float", "inf")
_NEG_INF = ("$float", "-inf")
# Decimals without a fractional scale below this become ints (exact); others floats.
_DECIMAL_INT_LIMIT = 2**63
# Linking values into buckets uses a slightly wider tolerance than the final check, so
# float rounding in the tolerance formula can never split two values that do match.
_LOOSE = 1 + 1e-9
# Pathological inputs (thousands of distinct rows all within tolerance of each other, or
# many different columns with identical value distributions) fall back to cheaper
# methods past these budgets. Each fallback can only under-credit, never over-credit.
_PAIR_BUDGET = 1_000_000
_SEARCH_BUDGET = 2_000
_MAX_AMBIGUOUS_COLUMNS = 200

_STATUS_OF_KIND = {
    Kind.ERROR: Status.RUNTIME_ERROR,
    Kind.TIMEOUT: Status.TIMEOUT,
    Kind.MEMORY: Status.MEMORY_LIMIT,
    Kind.OUTPUT_LIMIT: Status.OUTPUT_LIMIT,
    Kind.REJECTED: Status.REJECTED,
}
# When variants fail for different reasons, the verdict's status names the most telling one.
_STATUS_PRIORITY = (Status.MEMORY_LIMIT, Status.OUTPUT_LIMIT, Status.TIMEOUT, Status.RUNTIME_ERROR)


@dataclass(frozen=True)
class ResultSet:
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]  # cells: None, bool, int, float, str, bytes, decimal.Decimal
    truncated: bool = False  # the row/byte cap was hit while fetching


@dataclass(frozen=True)
class SortKeys:
    """The gold's rows in an order its ORDER BY allows, with each row's sort-key values.

    ``rows`` has the gold's columns; the gold's own rows are ``rows[offset:offset+n]``.
    Rows past them (a LIMIT's cut-off) and before them (an OFFSET) say which rows tie
    with the first and last of the gold's; only rows next to a cut need to be there.
    """

    rows: tuple[tuple[Any, ...], ...]
    keys: tuple[tuple[Any, ...], ...]
    offset: int = 0


@dataclass(frozen=True)
class Execution:
    """One query on one database variant."""

    result: ResultSet | None  # None when it did not run to completion
    error: str = ""  # engine error text ("" if none)
    kind: str = Kind.OK  # ok | error | timeout | rejected | memory | output_limit


@dataclass(frozen=True)
class SqlWeights:
    violation: float = 0.0  # score of a rejected candidate (scores are clamped to [0, 1])
    wrong_floor: float = 0.1  # runs but wrong: wrong_floor + wrong_span * mean(row_f1, col_f1)
    wrong_span: float = 0.4
    base_only: float = 0.5  # matches the reference database but fails some other one
    full: float = 1.0  # matches on every database
    blowup_factor: float = 10.0  # more than this many times the gold rows: partial F1 = 0


# ---------------------------------------------------------------- cells and tolerance


def normalise_cell(value: Any, *, float_digits: int | None = None) -> Any:
    """Map a fetched cell onto the few values comparison understands.

    bool becomes int; a Decimal without a fractional scale (Decimal("15"), SUM of a
    bigint) becomes an int, one with a scale (Decimal("2.50"), AVG) a float, as its SQL
    type says; -0.0 becomes 0.0; NaN and infinities become
    tokens that equal only themselves; bytes-likes become bytes. A type outside the
    contract (a list, an undecodable value) fails closed: it equals nothing, not itself.
    ``float_digits`` rounds finite floats to that many significant digits: a coarse key
    for display; equality itself never rounds, because rounding splits values that sit
    either side of a boundary.
    """
    kind = type(value)
    if value is None or kind is str or kind is int:
        return value
    if kind is bool:
        return int(value)
    if kind is float:
        return _normalise_float(value, float_digits)
    if kind is decimal.Decimal:
        if value.is_nan():
            return _NAN
        if value.is_infinite():
            return _NEG_INF if value.is_signed() else _INF
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent >= 0 and value.copy_abs() < _DECIMAL_INT_LIMIT:
            return int(value)
        return _normalise_float(float(value), float_digits)
    if kind is bytes or kind is bytearray or kind is memoryview:
        return bytes(value)
    return _Unmatched(kind.__qualname__)


class _Unmatched:
    """A cell of a type outside the contract; identity equality, so it matches nothing."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __repr__(self) -> str:
        return f"<unmatched {self.type_name}>"


def _normalise_float(value: float, float_digits: int | None) -> Any:
    if math.isnan(value):
        return _NAN
    if math.isinf(value):
        return _INF if value > 0 else _NEG_INF
    if value == 0:
        return 0.0
    if float_digits is not None:
        return float(f"{value:.{max(1, float_digits)}g}")
    return value


@dataclass(frozen=True)
class _Tol:
    rel: float
    abs: float

    def __post_init__(self) -> None:
        # rel <= 1 keeps "close" convex (a <= b <= c and a ~ c imply a ~ b ~ c), which the
        # bucketing, the clique shortcut and the one-dimensional sweeps rely on.
        if not (0 <= self.rel <= 1) or not (0 <= self.abs < math.inf):
            raise ValueError(f"tolerances must be 0 <= rel_tol <= 1 and 0 <= abs_tol < inf, got {self}")


def _is_num(cell: Any) -> bool:
    return type(cell) is int or type(cell) is float


def _in_tolerance(cell: Any) -> bool:
    return _is_num(cell) and _to_float(cell) is not None


def _to_float(cell: int | float) -> float | None:
    try:
        return float(cell)
    except OverflowError:  # an int beyond float range: exact only
        return None


def _floats_close(a: float, b: float, tol: _Tol, widen: float = 1.0) -> bool:
    return abs(a - b) <= max(tol.rel * max(abs(a), abs(b)), tol.abs) * widen


def _num_close(a: int | float, b: int | float, tol: _Tol) -> bool:
    if type(a) is int and type(b) is int:
        return a == b
    fa, fb = _to_float(a), _to_float(b)
    if fa is None or fb is None:
        return False
    return _floats_close(fa, fb, tol)


def _cells_equal(a: Any, b: Any, tol: _Tol) -> bool:
    if _is_num(a) and _is_num(b):
        return _num_close(a, b, tol)
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------- tables

Row = tuple[Any, ...]


@dataclass(frozen=True)
class _Table:
    names: tuple[str, ...]
    rows: list[Row]
    width: int
    truncated: bool

    @cached_property
    def tolerant(self) -> tuple[bool, ...]:
        """Per column, whether its numbers compare with the tolerance: it holds a float
        (a gold table's notion; a candidate's numbers are seen the gold's way)."""
        return tuple(float in set(map(type, column)) for column in self.columns)

    @cached_property
    def columns(self) -> list[Row]:
        return [tuple(row[i] for row in self.rows) for i in range(self.width)]

    @cached_property
    def profiles(self) -> list[_Column]:
        return [_Column(column) for column in self.columns]

    @cached_property
    def _exact_view(self) -> _Table:
        if not any(type(cell) is float for row in self.rows for cell in row):
            return self
        rows = [tuple(map(_exact_cell, row)) for row in self.rows]
        return _Table(self.names, rows, self.width, self.truncated)

    def view(self, tolerant: bool) -> _Table:
        """This (candidate) table as a gold column of that kind sees it."""
        return self if tolerant else self._exact_view

    def part(self, start: int, end: int) -> _Table:
        if (start, end) == (0, len(self.rows)):
            return self
        return _Table(self.names, self.rows[start:end], self.width, self.truncated)


def _exact_cell(cell: Any) -> Any:
    """A candidate cell against a gold integer column: an integral float is that integer,
    any other float a token equal to no integer (3.0 is 3; 3.003 is nothing there)."""
    if type(cell) is float:
        return int(cell) if cell.is_integer() else ("$inexact", cell)
    return cell


def _table(result: ResultSet) -> _Table | None:
    """Normalised copy of a result set; None when a row's width disagrees with the header."""
    width = len(result.columns)
    rows = []
    for row in result.rows:
        if len(row) != width:
            return None
        rows.append(tuple(normalise_cell(cell) for cell in row))
    return _Table(tuple(str(name) for name in result.columns), rows, width, bool(result.truncated))


def _gold_table(result: ResultSet) -> _Table | None:
    """A gold result, its column kinds decided: a column with a float in it is tolerant."""
    table = _table(result)
    if table is None:
        return None
    # an exact column holds no float; only a tolerant column's integers need converting
    pairs = zip(table.tolerant, table.columns, strict=True)
    if any(loose and int in set(map(type, column)) for loose, column in pairs):
        return _Table(table.names, _as_gold(table.rows, table.tolerant), table.width, table.truncated)
    return table


def _as_gold(rows: Iterable[Row], tolerant: tuple[bool, ...]) -> list[Row]:
    """Normalised gold rows in the given column kinds: a tolerant column's integers become
    floats (they compare with the tolerance too), an exact column's floats are seen as
    exact numbers."""
    out = []
    for row in rows:
        cells = []
        for cell, loose in zip(row, tolerant, strict=True):
            if loose and type(cell) is int:
                value = _to_float(cell)
                cells.append(cell if value is None else value)
            else:
                cells.append(cell if loose else _exact_cell(cell))
        out.append(tuple(cells))
    return out


# ---------------------------------------------------------------- order with ties


@dataclass(frozen=True)
class _Segment:
    """Candidate rows [start, end) must be rows of ``pool``: all of them when ``exact``
    (a whole tie group), else any of them (a group cut by LIMIT or OFFSET)."""

    start: int
    end: int
    pool: _Table
    exact: bool


def _segments(gold: _Table, sort: SortKeys, tol: _Tol) -> list[_Segment] | None:
    """The tie groups of the gold's rows, or None when they do not describe the gold (then
    the order is strict) or when no two of its rows tie (strict is the same, and faster)."""
    n, start = len(gold.rows), sort.offset
    if len(sort.keys) != len(sort.rows) or start < 0 or len(sort.rows) < start + n:
        return None
    if any(len(row) != gold.width for row in sort.rows):
        return None
    rows = _as_gold((tuple(map(normalise_cell, row)) for row in sort.rows), gold.tolerant)
    keys = [tuple(map(normalise_cell, key)) for key in sort.keys]
    segments = []
    first = 0
    for i in range(1, len(rows) + 1):
        if i < len(rows) and keys[i] == keys[first]:
            continue
        lo, hi = max(first, start), min(i, start + n)
        if lo < hi:
            pool = _Table(gold.names, rows[first:i], gold.width, False)
            segments.append(_Segment(lo - start, hi - start, pool, first >= start and i <= start + n))
        first = i
    if all(s.end - s.start == 1 and len(s.pool.rows) == 1 for s in segments):
        return None
    if not all(_max_matching(gold.rows[s.start : s.end], s.pool.rows, tol) == s.end - s.start for s in segments):
        return None  # the gold's own rows break these groups: the keys are not the gold's
    return segments


# ---------------------------------------------------------------- multiset matching


_Key = tuple[Row, tuple[type, ...]]


def _multiset(rows: Sequence[Row]) -> Counter[_Key]:
    """Rows with their counts, keyed with their cells' types: 3 == 3.0 in Python, but an
    int-vs-int comparison is exact while int-vs-float is tolerant, so merging the two
    would let a float stand in for an integer it does not equal."""
    return Counter(zip(rows, [tuple(map(type, row)) for row in rows], strict=True))


def _max_matching(cand: Sequence[Row], gold: Sequence[Row], tol: _Tol) -> int:
    """How many candidate rows can be paired one-to-one with equal gold rows (a maximum
    bipartite matching under the tolerance), rows of equal width."""
    return _match_counts(_multiset(cand), _multiset(gold), tol)


def _exact_overlap(a: Counter[Any], b: Counter[Any]) -> int:
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    return sum(min(n, big[key]) for key, n in small.items() if key in big)


def _match_counts(cc: Counter[_Key], gc: Counter[_Key], tol: _Tol) -> int:
    if not cc or not gc:
        return 0
    if cc == gc:
        return sum(cc.values())
    signatures = {types for _, types in cc} | {types for _, types in gc}
    tolerant = sorted({i for types in signatures for i, t in enumerate(types) if t is float})
    if not tolerant:
        return _exact_overlap(cc, gc)

    everything = [row for row, _ in (*cc, *gc)]
    chains = {i: _chain_ids((row[i] for row in everything), tol) for i in tolerant}

    def block_key(row: Row) -> Row:
        parts = list(row)
        for i in tolerant:
            cell = row[i]
            value = _to_float(cell) if _is_num(cell) else None
            parts[i] = ("#", chains[i][value]) if value is not None else ("=", cell)
        return tuple(parts)

    blocks: dict[Row, tuple[list[tuple[Row, int]], list[tuple[Row, int]]]] = {}
    for (row, _), n in cc.items():
        blocks.setdefault(block_key(row), ([], []))[0].append((row, n))
    for (row, _), n in gc.items():
        blocks.setdefault(block_key(row), ([], []))[1].append((row, n))

    budget = _PAIR_BUDGET
    matched = 0
    for key, (c_rows, g_rows) in blocks.items():
        if not c_rows or not g_rows:
            continue
        positions = [i for i in tolerant if key[i][0] == "#"]
        if _is_clique([row for row, _ in (*c_rows, *g_rows)], positions, tol):
            matched += min(sum(n for _, n in c_rows), sum(n for _, n in g_rows))
        elif len(c_rows) * len(g_rows) <= budget:
            budget -= len(c_rows) * len(g_rows)
            matched += _block_flow(c_rows, g_rows, positions, tol)
        else:
            matched += _block_sweep(c_rows, g_rows, positions, tol)
    return matched


def _chain_ids(cells: Iterable[Any], tol: _Tol) -> dict[float, int]:
    """Number the runs of sorted values in which each is close to the next. Closeness is
    convex, so any two close values share a run; the runs are the blocking keys."""
    values = sorted({f for c in cells if _is_num(c) and (f := _to_float(c)) is not None})
    ids: dict[float, int] = {}
    run = 0
    for k, value in enumerate(values):
        if k and not _floats_close(values[k - 1], value, tol, _LOOSE):
            run += 1
        ids[value] = run
    return ids


def _is_clique(rows: list[Row], positions: list[int], tol: _Tol) -> bool:
    """True when every pair of these rows is close: by convexity it suffices that each
    column's extremes are close (and its integers all equal, ints being exact)."""
    for p in positions:
        cells = [row[p] for row in rows]
        if len({c for c in cells if type(c) is int}) > 1:
            return False
        values = [float(c) for c in cells]
        if not _floats_close(min(values), max(values), tol):
            return False
    return True


def _rows_close(a: Row, b: Row, positions: list[int], tol: _Tol) -> bool:
    return all(_num_close(a[p], b[p], tol) for p in positions)


def _block_flow(c_rows: list[tuple[Row, int]], g_rows: list[tuple[Row, int]], positions: list[int], tol: _Tol) -> int:
    edges = [[j for j, (g, _) in enumerate(g_rows) if _rows_close(c, g, positions, tol)] for c, _ in c_rows]
    return _max_flow([n for _, n in c_rows], [n for _, n in g_rows], edges)


def _block_sweep(c_rows: list[tuple[Row, int]], g_rows: list[tuple[Row, int]], positions: list[int], tol: _Tol) -> int:
    """Linear two-pointer pass over both sides sorted by value: a valid, maybe smaller, matching."""

    def key(entry: tuple[Row, int]) -> tuple[float, ...]:
        return tuple(float(entry[0][p]) for p in positions)

    cs, gs = sorted(c_rows, key=key), sorted(g_rows, key=key)
    c_left, g_left = [n for _, n in cs], [n for _, n in gs]
    i = j = matched = 0
    while i < len(cs) and j < len(gs):
        if _rows_close(cs[i][0], gs[j][0], positions, tol):
            taken = min(c_left[i], g_left[j])
            matched += taken
            c_left[i] -= taken
            g_left[j] -= taken
            if c_left[i] == 0:
                i += 1
            if g_left[j] == 0:
                j += 1
        elif key(cs[i]) < key(gs[j]):
            i += 1
        else:
            j += 1
    return matched


def _max_flow(left_caps: list[int], right_caps: list[int], edges: list[list[int]]) -> int:
    """Dinic's maximum flow, source -> left (cap) -> right (unbounded) -> sink (cap)."""
    n_left = len(left_caps)
    source, sink = 0, n_left + len(right_caps) + 1
    graph: list[list[int]] = [[] for _ in range(sink + 1)]
    head: list[int] = []
    cap: list[int] = []

    def add(u: int, v: int, c: int) -> None:
        graph[u].append(len(head))
        head.append(v)
        cap.append(c)
        graph[v].append(len(head))
        head.append(u)
        cap.append(0)

    unbounded = sum(left_caps)
    for i, c in enumerate(left_caps):
        add(source, 1 + i, c)
        for j in edges[i]:
            add(1 + i, 1 + n_left + j, unbounded)
    for j, c in enumerate(right_caps):
        add(1 + n_left + j, sink, c)

    flow = 0
    while True:
        level = _levels(graph, head, cap, source, sink)
        if level[sink] < 0:
            return flow
        nxt = [0] * (sink + 1)
        path: list[int] = []
        u = source
        while True:  # iterative DFS along the level graph; dead ends are cut off
            if u == sink:
                pushed = min(cap[e] for e in path)
                for e in path:
                    cap[e] -= pushed
                    cap[e ^ 1] += pushed
                flow += pushed
                path, u = [], source
                continue
            while nxt[u] < len(graph[u]):
                e = graph[u][nxt[u]]
                if cap[e] > 0 and level[head[e]] == level[u] + 1:
                    break
                nxt[u] += 1
            else:
                if u == source:
                    break
                level[u] = -1
                u = head[path.pop() ^ 1]
                nxt[u] += 1
                continue
            path.append(graph[u][nxt[u]])
            u = head[path[-1]]


def _levels(graph: list[list[int]], head: list[int], cap: list[int], source: int, sink: int) -> list[int]:
    """Each node's distance from the source over edges with capacity left (-1: unreachable).
    A phase pushes flow only one level up at a time, which bounds the number of phases."""
    level = [-1] * (sink + 1)
    level[source] = 0
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for e in graph[u]:
            if cap[e] > 0 and level[head[e]] < 0:
                level[head[e]] = level[u] + 1
                queue.append(head[e])
    return level


# ---------------------------------------------------------------- column alignment


class _Column:
    """One column's values, with what comparisons need computed once, on demand."""

    def __init__(self, cells: Row) -> None:
        self.cells = cells

    @cached_property
    def types(self) -> set[type]:
        return set(map(type, self.cells))

    @cached_property
    def counts(self) -> Counter[_Key]:
        """The column as a multiset of one-cell rows, the form ``_match_counts`` takes."""
        return Counter(zip(zip(self.cells), zip(map(type, self.cells)), strict=True))

    @cached_property
    def numbers(self) -> list[int | float]:
        """Cells inside tolerance arithmetic, sorted by value."""
        cells = [c for c in self.cells if _in_tolerance(c)]
        return sorted(cells, key=float)

    @cached_property
    def others(self) -> Counter[_Key]:
        """Cells outside tolerance arithmetic (they compare exactly)."""
        return Counter({key: n for key, n in self.counts.items() if not _in_tolerance(key[0][0])})


def _same_values(gold: _Column, cand: _Column, tol: _Tol) -> bool:
    """Whether two columns hold the same multiset of values (within tolerance)."""
    if gold.counts == cand.counts:
        return True
    if float not in gold.types | cand.types:
        return False
    if len(gold.numbers) != len(cand.numbers) or gold.others != cand.others:
        return False
    # Paired in sorted order the values all match: that is a perfect matching. Without
    # integers closeness is convex, and sorted pairing is then optimal in one dimension.
    if all(_num_close(a, b, tol) for a, b in zip(gold.numbers, cand.numbers, strict=True)):
        return True
    if int not in gold.types or int not in cand.types:
        return False
    return _match_counts(cand.counts, gold.counts, tol) == len(gold.cells)


def _column_overlap(gold: _Column, cand: _Column, tol: _Tol) -> int:
    """How many values two columns share, as multisets under the tolerance."""
    if float not in gold.types | cand.types:
        return _exact_overlap(gold.counts, cand.counts)
    shared = _exact_overlap(gold.others, cand.others)
    if int in gold.types and int in cand.types:  # int-vs-int is exact: not convex
        numeric = Counter({key: n for key, n in cand.counts.items() if key not in cand.others})
        return shared + _match_counts(
            numeric, Counter({k: n for k, n in gold.counts.items() if k not in gold.others}), tol
        )
    # One dimension, convex closeness: matching the two smallest remaining values when
    # close, else dropping the smaller (nothing later can reach it), is optimal.
    a, b = gold.numbers, cand.numbers
    i = j = 0
    while i < len(a) and j < len(b):
        if _num_close(a[i], b[j], tol):
            shared += 1
            i += 1
            j += 1
        elif a[i] < b[j]:
            i += 1
        else:
            j += 1
    return shared


def _column_key(column: Row) -> tuple[Row, tuple[type, ...]]:
    return column, tuple(map(type, column))


def _classes(columns: list[Row]) -> tuple[list[list[int]], list[int]]:
    """Group identical columns: permuting them among themselves changes no row."""
    ids: dict[tuple[Row, tuple[int, ...]], int] = {}
    members: list[list[int]] = []
    class_of = []
    for j, column in enumerate(columns):
        cid = ids.setdefault(_column_key(column), len(ids))
        if cid == len(members):
            members.append([])
        members[cid].append(j)
        class_of.append(cid)
    return members, class_of


def _group_holds(rows: list[Row], group: _Segment, tol: _Tol) -> bool:
    """Whether these candidate rows (the group's positions) are rows of the group's pool."""
    if group.exact and len(rows) == 1:
        return all(_cells_equal(a, b, tol) for a, b in zip(rows[0], group.pool.rows[0], strict=True))
    return _max_matching(rows, group.pool.rows, tol) == len(rows)


@dataclass
class _Alignment:
    """What the phases of one alignment share, computed once. The candidate's identical
    columns form classes (``members``), so permutations among them are never told apart;
    its cells are seen as each gold column's kind sees them (``views``); the memos keep the
    search's repeated questions cheap."""

    gold: _Table
    tol: _Tol
    groups: list[_Segment]  # the row groups that must hold: one whole group unless ties are known
    strict: bool  # the order is the gold's, row by row
    members: list[list[int]]  # candidate column classes: the columns of each
    gold_class: list[int]  # gold column -> its class among the gold's identical columns
    views: list[_Table]  # candidate cells as gold column i sees them
    parts: dict[tuple[bool, int], _Table] = field(default_factory=dict)
    pairs: dict[tuple[int, int, int, int], bool] = field(default_factory=dict)

    @cached_property
    def reps(self) -> list[int]:
        """One column per class: the class's columns are identical, any one speaks for all."""
        return [m[0] for m in self.members]

    @cached_property
    def whole(self) -> bool:
        """With every group whole, a column's values overall must be the gold's: a cheap
        first test that spares most wrong pairs the walk through the groups."""
        return len(self.groups) > 1 and all(group.exact for group in self.groups)

    def part(self, i: int, s: int) -> _Table:
        """Group s's candidate rows as gold column i's kind sees them, shared by every gold
        column of that kind."""
        key = (self.gold.tolerant[i], s)
        if key not in self.parts:
            self.parts[key] = self.views[i].part(self.groups[s].start, self.groups[s].end)
        return self.parts[key]

    def permutation(self, choice: dict[int, int]) -> tuple[int, ...]:
        """Classes chosen per gold column, made concrete: each class's columns handed out in order."""
        pools = [list(m) for m in self.members]
        return tuple(pools[choice[i]].pop(0) for i in range(self.gold.width))


def _align(
    cand: _Table, gold: _Table, order_matters: bool, tol: _Tol, segments: list[_Segment] | None = None
) -> tuple[int, ...] | None:
    """A permutation p (gold column i = candidate column p[i]) under which the rows match,
    or None. Rows are a multiset unless ``order_matters``: then a sequence, strictly
    without ``segments``, else one multiset per tie group at its positions."""
    k, n = gold.width, len(gold.rows)
    if cand.width != k or len(cand.rows) != n:
        return None
    if n == 0:
        return tuple(range(k))
    alignment = _alignment(cand, gold, order_matters, tol, segments)
    options = _column_options(alignment, cand.names)
    if not _has_assignment(options, [len(m) for m in alignment.members]):
        return None
    if alignment.strict:  # every column equal elementwise means every row equal
        return alignment.permutation(_assignment(options, [len(m) for m in alignment.members]))
    return _search_permutation(alignment, options)


def _alignment(
    cand: _Table, gold: _Table, order_matters: bool, tol: _Tol, segments: list[_Segment] | None
) -> _Alignment:
    """Set up an alignment: without known ties an order is strict, and without an order
    the rows form one group, the whole table."""
    members, _ = _classes(cand.columns)
    _, gold_class = _classes(gold.columns)
    strict = order_matters and segments is None
    groups = [_Segment(0, len(gold.rows), gold, True)] if not order_matters or segments is None else segments
    views = [cand.view(loose) for loose in gold.tolerant]
    return _Alignment(gold, tol, groups, strict, members, gold_class, views)


def _column_options(alignment: _Alignment, names: tuple[str, ...]) -> list[list[int]]:
    """Per gold column, the candidate column classes that could be it, likeliest first
    (the same position, then the same name): the search takes them in this order, so an
    honest query is confirmed at its first try."""
    fits = _fits_in_order if alignment.strict else _fits_groups
    lowered = [name.lower() for name in names]

    def preference(i: int, cid: int) -> tuple[int, int, int]:
        ms = alignment.members[cid]
        return (i not in ms, alignment.gold.names[i].lower() not in [lowered[j] for j in ms], ms[0])

    return [
        sorted(
            (cid for cid in range(len(alignment.members)) if fits(alignment, i, cid)),
            key=lambda c, i=i: preference(i, c),
        )
        for i in range(alignment.gold.width)
    ]


def _fits_in_order(alignment: _Alignment, i: int, cid: int) -> bool:
    """Under a strict order a candidate column must be the gold column cell by cell; with
    every column so, every row is too, so no row check follows."""
    cells = alignment.views[i].columns[alignment.reps[cid]]
    return all(_cells_equal(c, g, alignment.tol) for c, g in zip(cells, alignment.gold.columns[i], strict=True))


def _fits_groups(alignment: _Alignment, i: int, cid: int) -> bool:
    """Whether a candidate column holds each group's values of gold column i (a group cut
    by LIMIT or OFFSET: as many of its pool's values as it has positions). Necessary, not
    sufficient: it prunes pairings before any permutation's rows are compared."""
    rep, tol = alignment.reps[cid], alignment.tol
    if alignment.whole and not _same_values(alignment.gold.profiles[i], alignment.views[i].profiles[rep], tol):
        return False
    for s, group in enumerate(alignment.groups):
        if group.exact and group.end - group.start == 1:  # a row alone: compare cells
            if not _cells_equal(alignment.views[i].rows[group.start][rep], group.pool.rows[0][i], tol):
                return False
            continue
        want, have = group.pool.profiles[i], alignment.part(i, s).profiles[rep]
        if group.exact and not _same_values(want, have, tol):
            return False
        if not group.exact and _column_overlap(want, have, tol) != group.end - group.start:
            return False
    return True


def _rows_match(alignment: _Alignment, choice: dict[int, int]) -> bool:
    """The proof for one full choice: the column checks are necessary only, so the rows,
    projected by the choice's permutation, must hold group by group."""
    perm = alignment.permutation(choice)
    k, n = alignment.gold.width, len(alignment.gold.rows)
    projected = [tuple(alignment.views[i].rows[r][perm[i]] for i in range(k)) for r in range(n)]
    return all(_group_holds(projected[g.start : g.end], g, alignment.tol) for g in alignment.groups)


def _pair_holds(alignment: _Alignment, i: int, cid: int, i2: int, cid2: int) -> bool:
    """Whether two column choices agree in every group (their cells, paired, are pairs of the
    gold's): a wrong choice is cut at its second column instead of at the end of the search.
    Memoised, because the search asks the same pairs again."""
    key = (i, cid, i2, cid2)
    if key not in alignment.pairs:
        reps = alignment.reps
        alignment.pairs[key] = all(
            _group_holds(
                list(
                    zip(alignment.part(i, s).columns[reps[cid]], alignment.part(i2, s).columns[reps[cid2]], strict=True)
                ),
                _Segment(
                    g.start,
                    g.end,
                    _Table(("a", "b"), list(zip(g.pool.columns[i], g.pool.columns[i2], strict=True)), 2, False),
                    g.exact,
                ),
                alignment.tol,
            )
            for s, g in enumerate(alignment.groups)
        )
    return alignment.pairs[key]


def _search_permutation(alignment: _Alignment, options: list[list[int]]) -> tuple[int, ...] | None:
    """A class for every gold column under which the rows match. Columns with one option
    are fixed first; the rest are searched depth first, fewest options first, within a
    budget: past it (or past too many ambiguous columns) no match, which only under-credits."""
    k = alignment.gold.width
    remaining = [len(m) for m in alignment.members]
    choice: dict[int, int] = {}
    for i in range(k):
        if len(options[i]) == 1:
            choice[i] = options[i][0]
            remaining[options[i][0]] -= 1
    ambiguous = [i for i in range(k) if len(options[i]) > 1]
    if not ambiguous:
        return alignment.permutation(choice) if _rows_match(alignment, choice) else None
    if len(ambiguous) > _MAX_AMBIGUOUS_COLUMNS:
        return None
    ambiguous.sort(key=lambda i: (len(options[i]), i))
    steps = [_SEARCH_BUDGET]
    gold_class = alignment.gold_class

    def search(pos: int) -> bool:
        steps[0] -= 1
        if steps[0] < 0:
            return False
        if pos == len(ambiguous):
            return _rows_match(alignment, choice)
        i = ambiguous[pos]
        # identical gold columns are interchangeable: take their classes in increasing order
        floor = max((choice[i2] for i2 in ambiguous[:pos] if gold_class[i2] == gold_class[i]), default=-1)
        for cid in options[i]:
            if remaining[cid] == 0 or cid < floor:
                continue
            if not all(_pair_holds(alignment, i, cid, i2, choice[i2]) for i2 in ambiguous[:pos]):
                continue
            choice[i] = cid
            remaining[cid] -= 1
            if search(pos + 1):
                return True
            remaining[cid] += 1
            del choice[i]
        return False

    return alignment.permutation(choice) if search(0) else None


def _assignment(options: list[list[int]], capacity: list[int]) -> dict[int, int]:
    """Kuhn's augmenting paths: each row of ``options`` gets one class, within capacity."""
    holders: list[list[int]] = [[] for _ in capacity]
    choice: dict[int, int] = {}

    def place(i: int, seen: set[int]) -> bool:
        for cid in options[i]:
            if cid in seen:
                continue
            seen.add(cid)
            if len(holders[cid]) < capacity[cid]:
                holders[cid].append(i)
                choice[i] = cid
                return True
            for other in list(holders[cid]):
                holders[cid].remove(other)
                if place(other, seen):
                    holders[cid].append(i)
                    choice[i] = cid
                    return True
                holders[cid].append(other)
        return False

    for i in range(len(options)):
        if not place(i, set()):
            return {}
    return choice


def _has_assignment(options: list[list[int]], capacity: list[int]) -> bool:
    return len(_assignment(options, capacity)) == len(options)


# ---------------------------------------------------------------- public comparisons


def results_match(
    candidate: ResultSet,
    gold: ResultSet,
    *,
    order_matters: bool,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
    sort_keys: SortKeys | None = None,
) -> bool:
    """Whether the candidate's result is the gold answer, up to column order and names
    (and, when order matters and the gold's ``sort_keys`` are known, up to ties).

    Two empty results of the same width match (the caller decides what that proves);
    a truncated result or a malformed one (row width != header width) never matches.
    """
    tol = _Tol(rel_tol, abs_tol)
    cand, want = _table(candidate), _gold_table(gold)
    if cand is None or want is None or cand.truncated or want.truncated:
        return False
    segments = _segments(want, sort_keys, tol) if order_matters and sort_keys is not None else None
    return _align(cand, want, order_matters, tol, segments) is not None


@dataclass(frozen=True)
class _Overlap:
    row_f1: float = 0.0
    col_f1: float = 0.0
    matched_rows: int = 0
    blown_up: bool = False


def _overlap(cand: _Table, gold: _Table, tol: _Tol, blowup_factor: float) -> _Overlap:
    n_c, n_g = len(cand.rows), len(gold.rows)
    if cand.truncated or gold.truncated or not (n_c and n_g and cand.width and gold.width):
        return _Overlap()
    if n_c > blowup_factor * n_g:
        return _Overlap(blown_up=True)
    views = [cand.view(loose) for loose in gold.tolerant]
    sims = []
    for i, g in enumerate(gold.profiles):
        for j, c in enumerate(views[i].profiles):
            shared = _column_overlap(g, c, tol)
            if shared:
                sims.append((2 * shared / (n_c + n_g), i, j))
    # Greedy pairing, best overlap first: any one-to-one pairing scores a lower bound of
    # the best, so this can only under-credit.
    sims.sort(key=lambda s: (-s[0], abs(s[1] - s[2]), s[1], s[2]))
    perm: dict[int, int] = {}
    used: set[int] = set()
    total = 0.0
    for sim, i, j in sims:
        if i not in perm and j not in used:
            perm[i] = j
            used.add(j)
            total += sim
    col_f1 = 2 * total / (gold.width + cand.width)
    if len(perm) < gold.width:  # a gold column the candidate lacks: no gold row is present
        return _Overlap(0.0, col_f1)
    projected = [tuple(views[i].rows[r][perm[i]] for i in range(gold.width)) for r in range(n_c)]
    matched = _max_matching(projected, gold.rows, tol)
    return _Overlap(2 * matched / (n_c + n_g), col_f1, matched)


def partial_f1(
    candidate: ResultSet,
    gold: ResultSet,
    *,
    rel_tol: float = DEFAULT_REL_TOL,
    abs_tol: float = DEFAULT_ABS_TOL,
    blowup_factor: float = 10.0,
) -> tuple[float, float]:
    """(row_f1, column_f1): partial credit for a wrong answer, rows always as a multiset.

    Columns pair one-to-one by value overlap (each pair scores the F1 of its two value
    multisets); column F1 = 2 * sum(pair scores) / (gold width + candidate width), so
    extra and missing columns both cost. Rows are compared on the paired columns, extra
    candidate columns ignored (they already cost column F1); a gold column with no
    partner means no gold row was returned. Row F1 = 2 * matched / (gold rows +
    candidate rows). Both are 0 when either side is empty or truncated, or when the
    candidate returned more than ``blowup_factor`` times the gold rows (a cross join
    must not earn recall).
    """
    tol = _Tol(rel_tol, abs_tol)
    cand, want = _table(candidate), _gold_table(gold)
    if cand is None or want is None:
        return 0.0, 0.0
    overlap = _overlap(cand, want, tol, blowup_factor)
    return overlap.row_f1, overlap.col_f1


# ---------------------------------------------------------------- scoring


def _clamp(score: float) -> float:
    return min(max(score, 0.0), 1.0) if score == score else 0.0


def _db_name(index: int) -> str:
    return f"database #{index} ({'base' if index == 0 else 'variant'})"


@dataclass(frozen=True)
class _Outcome:
    ran: bool  # a complete result to compare (kind ok, not truncated)
    status: Status  # this database's test status
    matched: bool
    message: str
    cand: _Table | None = None
    overlap: _Overlap | None = None  # partial credit, for a wrong but complete result


def _execution_failure(execution: Execution) -> tuple[Status, str]:
    kind = execution.kind if execution.kind in _STATUS_OF_KIND else Kind.ERROR
    error = str(execution.error)[:300]
    if execution.kind == Kind.OK:  # "ok" without a result: did not run to completion
        return Status.RUNTIME_ERROR, "error: no result was returned"
    text = {
        Kind.ERROR: f"error: {error}" if error else "error",
        Kind.TIMEOUT: "timed out",
        Kind.MEMORY: "memory limit exceeded",
        Kind.OUTPUT_LIMIT: "output limit exceeded",
        Kind.REJECTED: f"rejected: {error}" if error else "rejected",
    }[kind]
    if error and kind in (Kind.TIMEOUT, Kind.MEMORY, Kind.OUTPUT_LIMIT):
        text += f": {error}"
    return _STATUS_OF_KIND[kind], text


def _explain(cand: _Table, gold: _Table, overlap: _Overlap, order_matters: bool, blowup_factor: float) -> str:
    n_c, n_g = len(cand.rows), len(gold.rows)
    if cand.width != gold.width:
        return f"column count {cand.width} != {gold.width}"
    if n_c == 0:
        return f"returned no rows; gold has {n_g}"
    if n_g == 0:
        return f"returned {n_c} rows; gold has none"
    if overlap.blown_up:
        return f"returned {n_c} rows, more than {blowup_factor:g}x the {n_g} gold rows"
    missing, extra = n_g - overlap.matched_rows, n_c - overlap.matched_rows
    parts = [f"{missing} of {n_g} gold rows missing"] if missing else []
    if extra:
        parts.append(f"{extra} unexpected row{'s' if extra != 1 else ''}")
    if parts:
        return ", ".join(parts)
    return "rows are right but in the wrong order" if order_matters else "values differ"


def score_sql(
    candidate: list[Execution],
    gold: list[ResultSet],
    *,
    order_matters: bool,
    rel_tol: float,
    abs_tol: float,
    weights: SqlWeights,
    findings: list[Finding],
    reads_no_table: bool = False,
    sort_keys: Sequence[SortKeys | None] = (),
) -> Verdict:
    """Score one query run on every database variant (``candidate[i]`` ran on the database
    whose gold answer is ``gold[i]``; #0 is the base).

    * a CRITICAL finding, or a rejected run on any database: REJECTED, ``violation``;
    * ``reads_no_table`` (the candidate reads no table, the gold does: a literal answer)
      and a complete result on the reference: REJECTED with a CRITICAL
      ``no_table_reference`` unless it is right on every database and some database's gold
      answer differs from the base's (else nothing proved it);
    * no complete result on the reference database: that run's status, 0
      (a truncated one, which hit the row or byte cap: OUTPUT_LIMIT, 0 like a timeout);
    * wrong on the reference: FAILED, ``wrong_floor + wrong_span * mean(row_f1, col_f1)``;
    * right on the reference, not everywhere: ``base_only`` and a ``coincidental_match``
      finding; the status names the most telling failure (FAILED when just wrong);
    * right everywhere: PASSED, ``full``; but when every gold result is empty nothing was
      proved, so FAILED at ``base_only`` with an ``uninformative_gold`` finding.

    ``sort_keys[i]``, where given, are the gold's sort keys on database i: ties may then
    be permuted. The reference is the base unless its gold result is empty (see the module
    docstring).
    Gold results that are missing, truncated or malformed make the task unjudgeable:
    SANDBOX_ERROR, score 0.

    Components: ``executes`` 1 when every database gave a complete result; ``matches_base``
    1 when the (informative) reference matched; ``variants_matched`` the fraction of all
    databases, base included, that matched; ``row_f1``/``col_f1`` 1 when the reference
    matched, else the partial credit on the database judged; ``cheat_penalty`` 1 when
    rejected.
    """
    try:
        tol = _Tol(rel_tol, abs_tol)
    except ValueError as exc:
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=str(exc))
    golds = _gold_tables(candidate, gold)
    if isinstance(golds, Verdict):
        return golds
    ties = _tie_groups(golds, sort_keys, order_matters, tol)
    outcomes = [
        _outcome_of(e, g, order_matters, tol, weights.blowup_factor, t)
        for e, g, t in zip(candidate, golds, ties, strict=True)
    ]
    case = _case(candidate, golds, outcomes, findings)
    if reads_no_table:
        _flag_unproved_literal(case, order_matters, tol)
    return _decide(case, weights)


def _outcome_of(
    execution: Execution,
    gold: _Table,
    order_matters: bool,
    tol: _Tol,
    blowup_factor: float,
    segments: list[_Segment] | None = None,
) -> _Outcome:
    """What one execution shows on its database: only a complete, well-formed result is
    compared (an error is never an empty result, a truncated one never matches), and only
    a wrong one is measured for partial credit."""
    if execution.kind != Kind.OK or execution.result is None:
        status, message = _execution_failure(execution)
        return _Outcome(False, status, False, message)
    cand = _table(execution.result)
    if cand is None:
        return _Outcome(False, Status.RUNTIME_ERROR, False, "malformed result: a row's width differs from the header")
    if cand.truncated:
        message = f"result truncated at {len(cand.rows)} rows: not compared"
        return _Outcome(False, Status.OUTPUT_LIMIT, False, message, cand, _Overlap())
    if _align(cand, gold, order_matters, tol, segments) is not None:
        return _Outcome(True, Status.PASSED, True, "" if gold.rows else "both empty: proves nothing", cand)
    overlap = _overlap(cand, gold, tol, blowup_factor)
    message = _explain(cand, gold, overlap, order_matters, blowup_factor)
    return _Outcome(True, Status.FAILED, False, message, cand, overlap)


def _proved(matched: list[bool], golds: list[_Table], order_matters: bool, tol: _Tol) -> bool:
    """Right on every database, and some database's gold answer differs from the base's:
    only then has a literal answer been shown right for the right reason."""
    return all(matched) and any(_align(g, golds[0], order_matters, tol) is None for g in golds[1:])


@dataclass
class _Case:
    """One candidate's outcomes on every database and the verdict's parts so far; the rules
    of ``_decide`` read it and add findings and components, in their order of precedence."""

    executions: list[Execution]
    golds: list[_Table]
    outcomes: list[_Outcome]
    findings: list[Finding]
    tests: list[TestResult]
    components: dict[str, float]

    @cached_property
    def informative(self) -> list[int]:
        """Databases whose gold has rows: only these can tell an empty answer from a right one."""
        return [i for i, g in enumerate(self.golds) if g.rows]

    @cached_property
    def ref(self) -> int:
        """The database that decides correctness: the base unless its gold is empty."""
        return self.informative[0] if self.informative else 0

    @cached_property
    def matched(self) -> list[bool]:
        return [o.matched for o in self.outcomes]

    def verdict(self, status: Status, score: float, message: str) -> Verdict:
        return Verdict(status, _clamp(score), self.tests, self.components, dedupe(self.findings), message[:1000])


def _case(executions: list[Execution], golds: list[_Table], outcomes: list[_Outcome], findings: list[Finding]) -> _Case:
    """The outcomes as tests, the caller's findings with an empty answer's warning (it can
    only match an empty gold, which proves nothing), and the components every verdict has."""
    tests = [TestResult(i, o.matched, o.status, _db_name(i), o.message) for i, o in enumerate(outcomes)]
    findings = list(findings)
    empty = [i for i, o in enumerate(outcomes) if o.cand is not None and not o.cand.rows and not o.cand.truncated]
    if empty:
        findings.append(
            Finding(
                "empty_result",
                Severity.WARNING,
                "the query returned no rows: an empty answer matches only an empty gold answer, which proves nothing",
                ", ".join(f"#{i}" for i in empty),
            )
        )
    case = _Case(executions, golds, outcomes, findings, tests, {})
    matched = case.matched
    case.components.update(
        executes=float(all(o.ran for o in outcomes)),
        matches_base=float(matched[case.ref] and bool(case.informative)),
        variants_matched=sum(matched) / len(matched),
        row_f1=0.0,
        col_f1=0.0,
    )
    return case


def _gold_tables(candidate: list[Execution], gold: list[ResultSet]) -> list[_Table] | Verdict:
    """The gold results as tables, or the SANDBOX_ERROR that says why the task cannot be
    judged: a gold answer we did not see whole is no answer to compare against."""
    if not gold or len(candidate) != len(gold):
        return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"{len(candidate)} executions for {len(gold)} gold results")
    wants = [_gold_table(g) for g in gold]
    for i, want in enumerate(wants):
        if want is None or want.truncated:
            why = "malformed" if want is None else "truncated"
            return Verdict(Status.SANDBOX_ERROR, 0.0, message=f"gold result for {_db_name(i)} is {why}")
    return [w for w in wants if w is not None]


def _tie_groups(
    golds: list[_Table], sort_keys: Sequence[SortKeys | None], order_matters: bool, tol: _Tol
) -> list[list[_Segment] | None]:
    """Per database, the gold's tie groups where its sort keys describe them; None (a strict
    order, or no order at all) elsewhere."""
    keys = list(sort_keys)[: len(golds)] if order_matters else []
    ties = [_segments(g, k, tol) if k is not None else None for g, k in zip(golds, keys, strict=False)]
    return ties + [None] * (len(golds) - len(ties))


def _flag_unproved_literal(case: _Case, order_matters: bool, tol: _Tol) -> None:
    """A query that reads no table (the gold does) answers with a literal: a CRITICAL
    finding unless a database with a different gold answer proved it right. A literal that
    did not run keeps its status."""
    if case.outcomes[case.ref].ran and not _proved(case.matched, case.golds, order_matters, tol):
        case.findings.append(
            Finding(
                "no_table_reference",
                Severity.CRITICAL,
                "the query reads no table while the gold does: a literal answer that no database "
                "with a different gold answer proved right",
            )
        )


def _decide(case: _Case, weights: SqlWeights) -> Verdict:
    """The rules in precedence: a cheat is never paid, whatever matched; then a right
    answer (proved only if some gold has rows); then right on the reference alone; then
    partial credit for a wrong one."""
    for rule in (_rejected, _right_everywhere, _right_on_reference_only):
        verdict = rule(case, weights)
        if verdict is not None:
            return verdict
    return _partial_credit(case, weights)


def _rejected(case: _Case, weights: SqlWeights) -> Verdict | None:
    """A CRITICAL finding or a run the sandbox refused on any database: ``violation``."""
    critical = [f.code for f in case.findings if f.severity is Severity.CRITICAL]
    rejected = [i for i, e in enumerate(case.executions) if e.kind == Kind.REJECTED]
    if not (critical or rejected):
        return None
    case.components["cheat_penalty"] = 1.0
    why = "; ".join(critical) if critical else f"{_db_name(rejected[0])}: {case.outcomes[rejected[0]].message}"
    return case.verdict(Status.REJECTED, weights.violation, f"rejected: {why}" if critical else why)


def _right_everywhere(case: _Case, weights: SqlWeights) -> Verdict | None:
    """Matched on every database: ``full``, unless every gold is empty and so proves nothing."""
    if not all(case.matched):
        return None
    case.components["row_f1"] = case.components["col_f1"] = 1.0
    if case.informative:
        return case.verdict(Status.PASSED, weights.full, f"matches all {len(case.golds)} database(s)")
    case.findings.append(
        Finding(
            "uninformative_gold",
            Severity.INFO,
            "every gold result is empty, so a query that returns nothing cannot be told from a right one",
        )
    )
    return case.verdict(Status.FAILED, weights.base_only, "matches, but every gold result is empty: proves nothing")


def _right_on_reference_only(case: _Case, weights: SqlWeights) -> Verdict | None:
    """Right on the (informative) reference but not everywhere: a coincidence the variants
    exposed, ``base_only``; the status names the most telling failure."""
    ref = case.ref
    if not (case.matched[ref] and case.informative):
        return None
    failing = [i for i, m in enumerate(case.matched) if not m]
    case.components["row_f1"] = case.components["col_f1"] = 1.0
    evidence = "; ".join(f"#{i}: {case.outcomes[i].message}" for i in failing)
    case.findings.append(
        Finding(
            "coincidental_match",
            Severity.INFO,
            f"matches {_db_name(ref)} but not {', '.join(_db_name(i) for i in failing)}",
            evidence[:500],
        )
    )
    statuses = {case.outcomes[i].status for i in failing}
    status = next((s for s in _STATUS_PRIORITY if s in statuses), Status.FAILED)
    return case.verdict(status, weights.base_only, f"matches {_db_name(ref)} but not: {evidence}")


def _partial_credit(case: _Case, weights: SqlWeights) -> Verdict:
    """Wrong on the reference: ``wrong_floor + wrong_span * mean(row_f1, col_f1)`` for a
    complete result; a failed run or a runaway (truncated) result earns nothing."""
    failing = [i for i, m in enumerate(case.matched) if not m]
    judged = case.ref if not case.matched[case.ref] else failing[0]  # the latter only when no gold has rows
    outcome = case.outcomes[judged]
    where = _db_name(judged)
    if outcome.overlap is None:  # no complete result: nothing to give partial credit for
        return case.verdict(outcome.status, 0.0, f"{where}: {outcome.message}")
    if outcome.status is Status.OUTPUT_LIMIT:  # a runaway result is no answer: like a timeout, 0
        return case.verdict(Status.OUTPUT_LIMIT, 0.0, f"{where}: {outcome.message}")
    case.components["row_f1"], case.components["col_f1"] = outcome.overlap.row_f1, outcome.overlap.col_f1
    score = weights.wrong_floor + weights.wrong_span * (outcome.overlap.row_f1 + outcome.overlap.col_f1) / 2
    return case.verdict(Status.FAILED, score, f"wrong on {where}: {outcome.message}")
