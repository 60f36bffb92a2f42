"""Turn a SQL task into its plan (the candidate's job, what its gold results need) or a static verdict.

Order of work for one task: extract the query from the completion; validate the spec;
run the static gate (anything but one read-only query is REJECTED before it runs);
name the reference results it needs (`SqlPlan.gold`: the gold query on each database
file, which the flow in `sandbox.sql.language` computes once per service); then the
sandbox runs the candidate on the base database and its variants and `rewards.sql`
compares on the trusted side.

On a database with automatic variants (`sandbox.sql.variants`) the gold runs on all of
them once, and each task keeps at most `keep` of those on which the gold's answer differs
from the base's (distillation: a variant where the gold's answer is the base's proves
nothing for that task, and running the candidate on it only costs). The candidate's job
names its databases once those gold results are known (the flow picks them). A task
whose gold changes on no variant runs on the base alone, with a
`no_distinguishing_variant` finding: its reward cannot tell a literal from a query.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rewards.compare import DEFAULT_ABS_TOL, DEFAULT_REL_TOL
from rewards.model import Finding, Severity, Status, Verdict
from rewards.sql import Execution, ResultSet, SqlWeights, results_match
from sandbox.api import pb
from sandbox.sql.extract import extract_sql
from sandbox.sql.gate import check_query, gold_orders_rows
from sandbox.sql.order import OrderPlan, plan_order
from sandbox.steps import InvalidTask
from sandbox.wire import codec
from sandbox.wire.messages import Kind, Mode, SqlJob, Tag

if TYPE_CHECKING:
    from sandbox.sql.registry import Registry

log = logging.getLogger(__name__)

ENGINES = ("sqlite", "postgres", "duckdb")
MAX_INLINE_BYTES = 1 << 20
MAX_ROWS = 10_000
MAX_RESULT_BYTES = 4 << 20
SQL_STEPS = 50_000_000
_SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class GoldKey:
    database: str  # a registered name, or "inline:<sha256>"
    query: str


@dataclass
class SqlContext:
    """What SQL tasks share across a service: registered databases, weights, and which
    variants distinguish each gold (the gold results themselves are the service's memos)."""

    registry: Registry = field(default_factory=lambda: _registry())
    weights: SqlWeights = field(default_factory=SqlWeights)
    kept: dict[tuple[GoldKey, bool, float, float, int], tuple[int, ...]] = field(default_factory=dict)

    def distinguishing(
        self, key: GoldKey, results: list[ResultSet | None], order: bool, rel_tol: float, abs_tol: float, keep: int
    ) -> tuple[int, ...]:
        """The first `keep` variants (indices into the gold's `results`) on which the gold's
        answer differs from the base's, computed once per gold and comparison."""
        memo = (key, order, rel_tol, abs_tol, keep)
        if memo not in self.kept:
            base, picked = results[0], []
            for index, result in enumerate(results[1:], 1):
                if len(picked) == keep:
                    break
                if result is None or base is None:
                    continue
                if not results_match(result, base, order_matters=order, rel_tol=rel_tol, abs_tol=abs_tol):
                    picked.append(index)
            self.kept[memo] = tuple(picked)
            if not picked:
                log.warning(
                    "sql_gold_unchanged_on_variants",
                    extra={"fields": {"database": key.database, "gold": key.query[:200], "variants": len(results) - 1}},
                )
        return self.kept[memo]


def _registry() -> Registry:
    from sandbox.sql.registry import Registry

    return Registry()


def result_set(record: dict[str, Any]) -> ResultSet:
    """An 'ok' record from the sandbox as a ResultSet; malformed data raises ValueError."""
    columns = record.get("columns")
    rows = record.get("rows")
    if not isinstance(columns, list) or not isinstance(rows, list):
        raise ValueError("malformed result")
    decoded = []
    for row in rows:
        values = codec.decode(row)
        if not isinstance(values, list) or len(values) != len(columns):
            raise ValueError("malformed row")
        decoded.append(tuple(values))
    return ResultSet(tuple(str(c) for c in columns), tuple(decoded), bool(record.get("truncated")))


def executions(records: list[Any], count: int) -> list[Execution] | None:
    """One Execution per database, in order; None if the runner did not report them all."""
    by_index = {r.get("i"): r for r in records if isinstance(r, dict) and r.get("t") == Tag.SQL}
    out = []
    for index in range(count):
        record = by_index.get(index)
        if record is None or record.get("kind") == Kind.DB_ERROR:
            return None
        kind = str(record.get("kind"))
        if kind == Kind.OK:
            try:
                out.append(Execution(result_set(record)))
            except (ValueError, TypeError, RecursionError):
                return None
        else:
            out.append(Execution(None, str(record.get("msg", ""))[:300], kind))
    return out


def _spec_query(task: Any) -> str:
    query = extract_sql(task.code)
    if not query:
        raise InvalidTask("code", "holds no SQL")
    return query


def _expected_rows(spec: Any) -> ResultSet:
    try:
        rows = codec.decode(json.loads(spec.expected_json))
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidTask("sql.expected_json", f"not valid (tagged) JSON: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise InvalidTask("sql.expected_json", "must be a JSON array of rows (arrays)")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise InvalidTask("sql.expected_json", "rows have different lengths")
    width = widths.pop() if widths else 0
    return ResultSet(tuple(f"column{i + 1}" for i in range(width)), tuple(tuple(r) for r in rows))


def _databases(spec: Any, registry: Registry, engine: str) -> tuple[str, list[str], dict[str, Any], int, int]:
    """(gold cache name, one entry per base/variant, engine-specific job fields,
    how many of the entries are automatic variants (the last ones), how many a task keeps)."""
    if spec.inline_sqlite and engine != "sqlite":
        raise InvalidTask("sql.inline_sqlite", f"is for the sqlite engine, not {engine}")
    if spec.inline_sqlite:
        if spec.database:
            raise InvalidTask("sql", "give database or inline_sqlite, not both")
        if len(spec.inline_sqlite) > MAX_INLINE_BYTES:
            raise InvalidTask("sql.inline_sqlite", f"exceeds {MAX_INLINE_BYTES} bytes")
        if not spec.inline_sqlite.startswith(_SQLITE_MAGIC):
            raise InvalidTask("sql.inline_sqlite", "is not a SQLite database file")
        digest = hashlib.sha256(spec.inline_sqlite).hexdigest()
        return f"inline:{digest}", ["inline"], {"inline": base64.b64encode(spec.inline_sqlite).decode()}, 0, 0
    if not spec.database:
        raise InvalidTask("sql.database", "is required (or inline_sqlite)")
    database = registry.databases.get(spec.database)
    if database is None:
        known = ", ".join(sorted(registry.databases)) or "none registered"
        raise InvalidTask("sql.database", f"unknown database {spec.database!r} ({known})")
    if database.engine != engine:
        raise InvalidTask("sql.engine", f"database {database.name!r} is a {database.engine} database, not {engine}")
    if engine == "postgres":
        return database.name, list(database.schemas), {"dsn": database.dsn}, 0, 0
    return database.name, database.sandbox_paths(), {"inline": None}, database.auto, database.keep


@dataclass(frozen=True)
class _GoldFacts:
    error: str  # "" if the gold is a single read-only query
    orders_rows: bool  # has a top-level ORDER BY
    projection: str
    reads_tables: bool = False


@functools.lru_cache(maxsize=4096)
def _gold_facts(gold_sql: str, dialect: str) -> _GoldFacts:
    """Parsed once per (gold, dialect): every completion of a prompt shares its gold query."""
    gate = check_query(gold_sql, dialect)
    if not gate.ok:
        return _GoldFacts(gate.error or "; ".join(f.code for f in gate.findings), False, "")
    return _GoldFacts("", gold_orders_rows(gold_sql, dialect), gate.projection, gate.reads_tables)


def _static_findings(query: str, kind: str, gold: _GoldFacts | None) -> list[Finding]:
    findings = []
    if kind == "constant":
        findings.append(
            Finding(
                "constant_query",
                Severity.WARNING,
                "the answer is built from literals, not read from the database",
                query[:200],
            )
        )
    elif kind == "star" and gold is not None and gold.projection == "columns":
        findings.append(
            Finding(
                "select_star_superset", Severity.WARNING, "selects * where the reference projects columns", query[:200]
            )
        )
    return findings


@dataclass(frozen=True)
class SqlPlan:
    """A SQL task to run: the candidate's job, and what its reference results need.

    With automatic variants (`variants`), the candidate's databases are chosen once the
    gold's results on all of them are known (`SqlContext.distinguishing`)."""

    job: SqlJob  # the candidate's job on the base database (and its given variants)
    where: str  # the job field naming its databases: "databases" or "schemas"
    every_file: tuple[str, ...]  # the base and every variant
    limits: dict[str, int]
    lane: str  # "postgres" for a PostgreSQL database, else the main pool
    findings: tuple[Finding, ...]
    order: bool
    rel_tol: float
    abs_tol: float
    weights: SqlWeights
    literal: bool  # the gold reads a table and the candidate reads none
    expected: ResultSet | None = None  # the task's expected rows, when it gives no gold query
    gold: GoldKey | None = None
    required: int = 0  # the gold must run cleanly on the first `required` files (0: all)
    variants: bool = False  # pick the distinguishing automatic variants
    keep: int = 0
    sorting: OrderPlan | None = None
    sort_key: GoldKey | None = None  # the query that reads the gold's sort keys

    def gold_job(self, query: str) -> SqlJob:
        """A job running a reference query on every file at once (its results are cached)."""
        return {**self.job, "query": query, self.where: list(self.every_file)}  # type: ignore[misc]


def prepare_sql(task: Any, context: SqlContext, limits: dict[str, int]) -> SqlPlan | Verdict:
    if task.WhichOneof("spec") != "sql":
        raise InvalidTask("sql", "a SQL task needs a sql spec")
    spec = task.sql
    engine = spec.engine or "sqlite"
    if engine not in ENGINES:
        raise InvalidTask("sql.engine", f"{engine!r} is not served here (available: {', '.join(ENGINES)})")
    if bool(spec.gold_sql.strip()) == bool(spec.expected_json.strip()):
        raise InvalidTask("sql", "give exactly one of gold_sql and expected_json")
    for name, value in (("rel_tol", spec.rel_tol), ("abs_tol", spec.abs_tol)):
        if value != value or not 0 <= value <= 1:
            raise InvalidTask(f"sql.{name}", f"must be within [0, 1] (got {value})")
    rel_tol, abs_tol = spec.rel_tol or DEFAULT_REL_TOL, spec.abs_tol or DEFAULT_ABS_TOL
    gold_sql = spec.gold_sql.strip()
    gold_facts = _gold_facts(gold_sql, engine) if gold_sql else None
    if gold_facts is not None and gold_facts.error:
        raise InvalidTask("sql.gold_sql", f"is not a single read-only query: {gold_facts.error}")
    name, every_file, extra, auto, keep = _databases(spec, context.registry, engine)
    expected = _expected_rows(spec) if not gold_sql else None
    # expected rows describe the base database only; base_only skips the variants; automatic
    # variants are added once the gold's answers on them are known (the flow picks them)
    paths = every_file[:1] if expected is not None or spec.base_only or auto else every_file
    order = {pb.SqlSpec.ORDER_MATTERS: True, pb.SqlSpec.ORDER_IGNORED: False}.get(
        spec.order, gold_facts is not None and gold_facts.orders_rows
    )
    query = _spec_query(task)
    gate = check_query(query, engine)
    if gate.ok:
        query = gate.statement  # exactly the one statement the gate read, nothing around it
    sql_limits = {**limits, "sql_steps": SQL_STEPS, "max_rows": MAX_ROWS, "max_result_bytes": MAX_RESULT_BYTES}
    where = "schemas" if engine == "postgres" else "databases"
    job: SqlJob = {"mode": Mode.SQL, "engine": engine, "query": query, where: paths, **extra, "limits": sql_limits}  # type: ignore[misc]
    if not gate.ok:
        if gate.error:
            return Verdict(
                Status.SYNTAX_ERROR,
                0.0,
                components={"executes": 0.0},
                message=f"does not parse: {gate.error}"[:500],
                findings=list(gate.findings),
            )
        return Verdict(
            Status.REJECTED,
            context.weights.violation,
            components={"cheat_penalty": 1.0},
            findings=list(gate.findings),
            message="rejected: " + "; ".join(f.code for f in gate.findings),
        )
    sorting = plan_order(gold_sql, engine) if order and gold_facts is not None and gold_facts.orders_rows else None
    return SqlPlan(
        job=job,
        where=where,
        every_file=tuple(every_file),
        limits=sql_limits,
        lane="postgres" if engine == "postgres" else "main",
        findings=(*gate.findings, *_static_findings(query, gate.projection, gold_facts)),
        order=order,
        rel_tol=rel_tol,
        abs_tol=abs_tol,
        weights=context.weights,
        literal=gold_facts is not None and gold_facts.reads_tables and not gate.reads_tables,
        expected=expected,
        gold=GoldKey(name, gold_sql) if gold_sql else None,
        required=len(every_file) - auto,
        variants=bool(auto) and not spec.base_only,
        keep=keep,
        sorting=sorting,
        sort_key=GoldKey(name, sorting.query) if sorting is not None and sorting.query is not None else None,
    )
