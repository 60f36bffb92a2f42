"""Run one read-only SQLite query per database inside the sandbox.

The candidate here is SQL, not code: SQLite's own permission system is what contains
it, so the runner executes it in-process (no fork per job) with every lever SQLite has:
a read-only, immutable open of a read-only mount; an authorizer that allows reads and
an allow-list of functions only (no load_extension, no ATTACH, no PRAGMA, no temp
tables, no writes); SQLITE_LIMIT_ATTACHED = 0 and tight length/depth limits; a hard
heap limit; a progress handler with a step budget and the wall-clock deadline; rows
fetched up to a row cap and a byte cap. The static gate on the trusted side has
already refused anything but one read-only query; this is the second, independent wall.

Stdlib only (part of the runner).
"""

from __future__ import annotations

import base64
import os
import sqlite3
import sys
import time
from typing import Any

import codec
import rows

_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
# Deterministic, side-effect-free core, date, math, JSON and window functions.
_ALLOWED_FUNCTIONS = frozenset(
    """
abs avg count max min sum total group_concat string_agg length octet_length lower upper substr substring
trim ltrim rtrim replace round coalesce ifnull nullif iif instr printf format typeof char unicode hex unhex
quote like glob soundex sign random randomblob zeroblob likely unlikely likelihood concat concat_ws
date time datetime julianday strftime unixepoch timediff
acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2 mod pi pow
power radians sin sinh sqrt tan tanh trunc
row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
json json_array json_array_length json_extract json_insert json_object json_patch json_quote json_remove
json_replace json_set json_type json_valid json_group_array json_group_object json_each json_tree
""".split()
)
_LIMITS = {
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LENGTH: 1 << 20,  # largest string or blob: randomblob bombs stop here
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 1 << 17,
    sqlite3.SQLITE_LIMIT_COLUMN: 1000,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 100,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 100,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 0,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 0,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
_HEAP_BYTES = 256 << 20
_PROGRESS_EVERY = 1000  # VM instructions between progress checks


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return _OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _ALLOWED_FUNCTIONS:
        return _OK
    return _DENY


def _open(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA hard_heap_limit={_HEAP_BYTES}")  # before the authorizer forbids PRAGMAs
    for limit, value in _LIMITS.items():
        conn.setlimit(limit, value)
    conn.set_authorizer(_authorizer)
    return conn


def _classify(error: BaseException) -> str:
    text = str(error).lower()
    if "interrupted" in text:
        return "timeout"
    if "not authorized" in text or "prohibited" in text:
        return "rejected"
    if isinstance(error, MemoryError) or "out of memory" in text:
        return "memory"
    return "error"


def execute(
    conn: sqlite3.Connection, query: str, deadline: float, steps: int, max_rows: int, max_bytes: int
) -> dict[str, Any]:
    """One query on one open database: the observation as a record."""
    budget = [steps // _PROGRESS_EVERY]

    def progress() -> int:
        budget[0] -= 1
        return 1 if budget[0] < 0 or time.monotonic() > deadline else 0

    conn.set_progress_handler(progress, _PROGRESS_EVERY)
    cap = rows.RowCap(max_rows, max_bytes, codec.encode)
    try:
        cursor = conn.execute(query)
        columns = [str(d[0])[:200] for d in cursor.description or ()]
        while cap.add(cursor.fetchmany(256)):
            pass
        cursor.close()
    except (sqlite3.Error, MemoryError, OverflowError, ValueError) as exc:
        return {"kind": _classify(exc), "msg": str(exc)[:300]}
    finally:
        conn.set_progress_handler(None, 0)
    return cap.record(columns)


PACKAGES = "/opt/rft-packages"  # read-only: engine packages mounted from the service's environment


def _duckdb_records(job: dict[str, Any]) -> list[dict[str, Any]]:
    """DuckDB, in this (forked, job-uid, rlimited) process: read-only, no external access,
    locked configuration, one thread, a memory limit, interrupted at the deadline."""
    import threading

    sys.path.insert(0, PACKAGES)
    import duckdb

    limits = job["limits"]
    deadline = time.monotonic() + limits["task_ms"] / 1000
    records = []
    for index, path in enumerate(job["databases"]):
        started = time.monotonic()
        try:
            conn = duckdb.connect(
                path,
                read_only=True,
                config={
                    "enable_external_access": False,
                    "autoload_known_extensions": False,
                    "autoinstall_known_extensions": False,
                    "threads": 1,
                    "memory_limit": "256MB",
                    "lock_configuration": True,
                },
            )
        except duckdb.Error as exc:
            records.append({"t": "sql", "i": index, "kind": "db_error", "msg": str(exc)[:300]})
            continue
        timer = threading.Timer(
            max(min(deadline, started + limits["test_ms"] / 1000) - time.monotonic(), 0), conn.interrupt
        )
        timer.start()
        try:
            cursor = conn.execute(job["query"])
            columns = [str(d[0])[:200] for d in cursor.description or ()]
            cap = rows.RowCap(limits["max_rows"], limits["max_result_bytes"], codec.encode)
            while cap.add(cursor.fetchmany(256)):
                pass
            record = cap.record(columns)
        except duckdb.InterruptException as exc:
            record = {"kind": "timeout", "msg": str(exc)[:300]}
        except duckdb.OutOfMemoryException as exc:
            record = {"kind": "memory", "msg": str(exc)[:300]}
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            text = str(exc)
            record = {"kind": "rejected" if "disabled" in text or "ermission" in text else "error", "msg": text[:300]}
        except (duckdb.Error, MemoryError, ValueError, OverflowError) as exc:
            record = {"kind": "error", "msg": str(exc)[:300]}
        finally:
            timer.cancel()
            conn.close()
        record["ms"] = round((time.monotonic() - started) * 1000, 3)
        records.append({"t": "sql", "i": index, **record})
    return records


def run(job: dict[str, Any], jobdir: str) -> list[dict[str, Any]]:
    """The candidate query on each database (base first, then variants), in order."""
    limits = job["limits"]
    deadline = time.monotonic() + limits["task_ms"] / 1000
    paths = list(job["databases"])
    if job.get("inline"):
        inline = os.path.join(jobdir, "inline.sqlite")
        with open(inline, "wb") as handle:
            handle.write(base64.b64decode(job["inline"]))
        paths = [inline]
    records = []
    for index, path in enumerate(paths):
        started = time.monotonic()
        try:
            conn = _open(path)
        except sqlite3.Error as exc:
            records.append({"t": "sql", "i": index, "kind": "db_error", "msg": str(exc)[:300]})
            continue
        try:
            record = execute(
                conn,
                job["query"],
                min(deadline, started + limits["test_ms"] / 1000),
                limits["sql_steps"],
                limits["max_rows"],
                limits["max_result_bytes"],
            )
        finally:
            conn.close()
        record["ms"] = round((time.monotonic() - started) * 1000, 3)
        records.append({"t": "sql", "i": index, **record})
    records.append({"t": "done"})
    return records
