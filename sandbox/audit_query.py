"""The audit log, queried with DuckDB: views over the JSON Lines files, read-only.

The log is the current file plus its rotated siblings (`STEM.YYYYMMDDTHHMMSSZ[.N]SUFFIX`,
see sandbox/audit_record.py's contract). DuckDB reads them all with one `read_json` and an
explicit column spec: fields it does not know are skipped, a line it cannot parse (the torn
last line of a crash mid-write) becomes an all-NULL row that the views drop, and a v1 line
(no `kind`) is left out too. The views are `attempts` (one row per scored attempt),
`findings` (one row per finding, with its attempt's context) and `events` (service events).

`audit sql` runs a person's own query, so the connection is locked down before it runs: a
single SELECT (or WITH ... SELECT) only, and DuckDB's file access limited to the log files
themselves (a SELECT cannot read /etc/passwd, COPY/ATTACH/INSTALL are refused twice over),
with the configuration locked so a query cannot unlock it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

_FINDING = "STRUCT(code VARCHAR, severity VARCHAR, message VARCHAR, evidence VARCHAR)"
COLUMNS: dict[str, str] = {
    "v": "INTEGER",
    "kind": "VARCHAR",
    "id": "VARCHAR",
    "time": "VARCHAR",
    "run": "VARCHAR",
    "step": "BIGINT",
    "caller": "VARCHAR",
    "principal": "VARCHAR",
    "task_id": "VARCHAR",
    "task_key": "VARCHAR",
    "language": "VARCHAR",
    "status": "VARCHAR",
    "score": "DOUBLE",
    "components": "MAP(VARCHAR, DOUBLE)",
    "findings": f"{_FINDING}[]",
    "max_severity": "VARCHAR",
    "code_sha256": "VARCHAR",
    "code_bytes": "BIGINT",
    "code_z": "VARCHAR",
    "code_truncated": "BOOLEAN",
    "task": "VARCHAR",
    # event records
    "code": "VARCHAR",
    "severity": "VARCHAR",
    "evidence": "VARCHAR",
    "message": "VARCHAR",
}
# what `summary` and `trend` count: COLUMNS' types, the findings without message and evidence
_LEAN = {
    **{name: COLUMNS[name] for name in ("kind", "id", "time", "run", "step", "caller", "task_id", "task_key")},
    **{name: COLUMNS[name] for name in ("language", "max_severity")},
    "findings": "STRUCT(code VARCHAR, severity VARCHAR)[]",
    "code": COLUMNS["code"],  # an event's
}
_ATTEMPT = [c for c in COLUMNS if c not in ("kind", "code", "severity", "evidence", "message")]
_EVENT = ["v", "id", "time", "code", "severity", "evidence", "message"]
_STAMP = r"\.\d{8}T\d{6}Z(?:\.\d+)?"
_READ_ONLY = {"SELECT"}


class AuditQueryError(Exception):
    """A query the audit store refuses or DuckDB rejects: the message says which and why."""


def log_files(path: str | Path) -> list[Path]:
    """The rotated files (oldest first, by their UTC stamp) then the current one."""
    current = Path(path)
    stem, suffix = current.stem, current.suffix
    pattern = re.compile(re.escape(stem) + _STAMP + re.escape(suffix) + "$")
    rotated = sorted(p for p in current.parent.glob(f"{stem}.*{suffix}") if pattern.match(p.name))
    files = [*rotated, current] if current.exists() else rotated
    return [p.resolve() for p in files]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Filters:
    """What every command narrows the log to: a run's name, a start time (ISO text, compared
    as text: `2026-12-01` and `2026-12-01T18:15` both work, as the UTC stamps sort as text)."""

    run: str | None = None
    since: str | None = None

    def where(self) -> str:
        clauses = []
        if self.run is not None:
            clauses.append(f"run = {_literal(self.run)}")
        if self.since is not None:
            clauses.append(f"time >= {_literal(self.since)}")
        return "".join(f" AND {clause}" for clause in clauses)


class AuditStore:
    """One DuckDB connection with the views over the log's files; read-only once `lock()`ed."""

    def __init__(self, path: str | Path, filters: Filters | None = None) -> None:
        self.files = log_files(path)
        if not self.files:
            raise AuditQueryError(f"no audit log at {path}")
        self.filters = filters or Filters()
        self.con = duckdb.connect(":memory:")
        self._files = "[" + ", ".join(_literal(str(p)) for p in self.files) + "]"
        where = self.filters.where()
        self.con.execute(f"CREATE VIEW raw AS SELECT * FROM {self._read(COLUMNS)}")  # noqa: S608 - quoted literals, our own names
        self.con.execute(f"CREATE VIEW attempts AS SELECT {', '.join(_ATTEMPT)} FROM raw WHERE kind = 'attempt'{where}")  # noqa: S608 - quoted literals, our own names
        self.con.execute(
            "CREATE VIEW findings AS SELECT id, time, run, step, caller, principal, task_id, language, status, "
            "score, f.code AS code, f.severity AS severity, f.message AS message, f.evidence AS evidence "
            "FROM (SELECT *, UNNEST(findings) AS f FROM attempts)"
        )
        self.con.execute(f"CREATE VIEW events AS SELECT {', '.join(_EVENT)} FROM raw WHERE kind = 'event'{where}")  # noqa: S608 - quoted literals, our own names
        self._locked = False
        self._lean = False

    def _read(self, columns: dict[str, str]) -> str:
        spec = "{" + ", ".join(f"{_literal(k)}: {_literal(t)}" for k, t in columns.items()) + "}"
        return (
            f"read_json({self._files}, columns = {spec}, format = 'newline_delimited', "
            "ignore_errors = true, maximum_object_size = 67108864)"
        )

    def lean(self) -> str:
        """Tables of what `summary` and `trend` count (`lean`: attempts, `lean_events`), read in
        ONE scan of the files: the JSON reader's cost is in the columns it builds, so this one
        builds no code, task, message or evidence, and the several GROUP BYs then run in memory."""
        if not self._lean:
            where = f"WHERE kind IN ('attempt', 'event'){self.filters.where()}"
            self.con.execute(f"CREATE TEMP TABLE lean_all AS SELECT * FROM {self._read(_LEAN)} {where}")  # noqa: S608 - quoted literals, our own names
            self.con.execute(
                "CREATE TEMP VIEW lean AS SELECT * EXCLUDE (kind, code) FROM lean_all WHERE kind = 'attempt'"
            )
            self.con.execute("CREATE TEMP VIEW lean_events AS SELECT code FROM lean_all WHERE kind = 'event'")
            self.con.execute(
                "CREATE TEMP VIEW lean_findings AS SELECT id, step, UNNEST(findings, recursive := true) FROM lean"
            )
            self._lean = True
        return "lean"

    def find(self, record_id: str) -> dict[str, Any] | None:
        """The attempt `record_id`, every field as written. Building every column of a million
        lines to keep one is slow, so DuckDB hands back only the lines whose text holds the id
        (read as raw JSON objects, no columns built) and the one that IS that attempt is parsed."""
        if not re.fullmatch(r"[0-9a-f]{1,64}", record_id):
            raise AuditQueryError(f"an attempt id is hex, e.g. a1b2c3d4e5f6a7b8, not {record_id!r}")
        objects = f"read_ndjson_objects({self._files}, ignore_errors = true, maximum_object_size = 67108864)"
        query = f"SELECT json FROM {objects} WHERE contains(json, ?)"  # noqa: S608 - quoted literals, our own names
        lines = self.con.execute(query, [f'"{record_id}"']).fetchall()
        for (line,) in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("kind") == "attempt" and record.get("id") == record_id:
                return record
        return None

    def lock(self) -> None:
        """From here on DuckDB may touch no file but the log's (read_json reads them through
        the views), and nothing may change that: a query can neither write nor reach out."""
        if self._locked:
            return
        allowed = "[" + ", ".join(_literal(str(p)) for p in self.files) + "]"
        self.con.execute(f"SET allowed_paths = {allowed}")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET autoinstall_known_extensions = false")
        self.con.execute("SET autoload_known_extensions = false")
        self.con.execute("SET lock_configuration = true")
        self._locked = True

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The trusted commands' own queries (fixed text, values as parameters)."""
        try:
            cursor = self.con.execute(sql, list(params))
        except duckdb.Error as exc:
            raise AuditQueryError(str(exc)) from None
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def user_query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """A person's query: refused unless it is one SELECT; runs on the locked connection."""
        try:
            statements = self.con.extract_statements(sql)
        except duckdb.Error as exc:
            raise AuditQueryError(str(exc)) from None
        if len(statements) != 1:
            raise AuditQueryError(f"one statement please, not {len(statements)}")
        kind = statements[0].type.name
        if kind not in _READ_ONLY:
            raise AuditQueryError(f"only SELECT (or WITH ... SELECT) queries are run, not {kind}")
        self.lock()
        try:
            cursor = self.con.execute(sql)
            names = [d[0] for d in cursor.description]
            return names, cursor.fetchall()
        except duckdb.Error as exc:
            raise AuditQueryError(str(exc)) from None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summary(store: AuditStore, top: int = 10) -> dict[str, Any]:
    """Counts by finding code, severity, language, caller and run; the tasks flagged most."""
    store.lean()
    totals = store.rows(
        "SELECT count(*) AS attempts, count(*) FILTER (len(findings) > 0) AS flagged, "
        "coalesce(sum(len(findings)), 0) AS findings FROM lean"
    )[0]
    totals["events"] = store.rows("SELECT count(*) AS n FROM lean_events")[0]["n"]

    def by(column: str) -> list[dict[str, Any]]:
        counts = "count(*) AS attempts, count(*) FILTER (len(findings) > 0) AS flagged, "
        counts += "count(*) FILTER (max_severity = 'CRITICAL') AS critical"
        order = f"flagged DESC, attempts DESC, {column} NULLS LAST"
        return store.rows(f"SELECT {column}, {counts} FROM lean GROUP BY ALL ORDER BY {order}")  # noqa: S608 - quoted literals, our own names

    return {
        "totals": totals,
        "by_code": store.rows(
            "SELECT code, severity, count(*) AS findings, count(DISTINCT id) AS attempts FROM lean_findings "
            "GROUP BY ALL ORDER BY attempts DESC, code"
        ),
        "by_severity": store.rows(
            "SELECT max_severity AS severity, count(*) AS attempts FROM lean "
            "GROUP BY ALL ORDER BY attempts DESC, severity NULLS LAST"
        ),
        "by_language": by("language"),
        "by_caller": by("caller"),
        "by_run": by("run"),
        # a problem is its task_key (every sample of it shares one), else, in older records, its task id
        "top_tasks": store.rows(
            "SELECT coalesce(task_key, task_id) AS task, min(task_id) AS example_id, language, "
            "count(*) FILTER (len(findings) > 0) AS flagged, "
            "count(*) FILTER (max_severity = 'CRITICAL') AS critical, count(*) AS attempts FROM lean "
            "GROUP BY task, language HAVING flagged > 0 ORDER BY critical DESC, flagged DESC, task LIMIT ?",
            [top],
        ),
        "events": store.rows(
            "SELECT code, count(*) AS events FROM lean_events GROUP BY ALL ORDER BY events DESC, code"
        ),
    }


def trend(store: AuditStore) -> dict[str, Any]:
    """Per training step: attempts, and per finding code the attempts flagged with it and their
    rate. The rate's denominator is every attempt at the step, which the log holds only when
    the service ran with --audit-results; `complete` says whether it did (any attempt without
    a finding is the sign), and without it a rate is over flagged attempts only."""
    store.lean()
    steps = store.rows(
        "SELECT step, count(*) AS attempts, count(*) FILTER (len(findings) > 0) AS flagged "
        "FROM lean WHERE step IS NOT NULL GROUP BY step ORDER BY step"
    )
    flagged = store.rows(
        "SELECT step, code, count(DISTINCT id) AS attempts FROM lean_findings WHERE step IS NOT NULL "
        "GROUP BY ALL ORDER BY step, code"
    )
    meta = store.rows(
        "SELECT count(*) FILTER (len(findings) = 0) AS clean, count(*) FILTER (step IS NULL) AS no_step FROM lean"
    )[0]
    codes = sorted({row["code"] for row in flagged})
    per_step = {row["step"]: {**row, "codes": {}} for row in steps}
    for row in flagged:
        entry = per_step[row["step"]]
        entry["codes"][row["code"]] = {"attempts": row["attempts"], "rate": row["attempts"] / entry["attempts"]}
    return {
        "by": "step",
        "complete": meta["clean"] > 0,
        "attempts_without_step": meta["no_step"],
        "codes": codes,
        "steps": list(per_step.values()),
    }


INCOMPLETE_NOTE = (
    "the log holds only attempts with findings (the service ran without --audit-results): "
    "a rate here is over flagged attempts, not over all attempts at the step"
)


def attempt(store: AuditStore, record_id: str) -> dict[str, Any] | None:
    """One attempt, every stored field (code and task still encoded); None when no such id."""
    return store.find(record_id)
