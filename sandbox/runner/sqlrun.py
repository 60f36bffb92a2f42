"""Run one read-only SQLite query per database inside the sandbox.

The candidate here is SQL, not code: SQLite's own permission system is what contains
it, so the runner executes it in-process (no fork per job) with every lever SQLite has:
a read-only, immutable open of a read-only mount; an authorizer that allows reads and
an allow-list of functions only (no load_extension, no ATTACH, no PRAGMA, no temp
tables, no writes); SQLITE_LIMIT_ATTACHED = 0 and tight length/depth limits; a hard
heap limit; a progress handler with a step budget and the wall-clock deadline; rows
fetched up to a row cap and a byte cap. The static gate on the trusted side has
already refused anything but one read-only query; this is the second, independent wall.

One engine step can still run for minutes (instr() over two 1 MB strings is quadratic,
and the progress handler only runs between steps), so the runner keeps the clock from a
thread of its own: a watchdog (`watched`) that, past a database's deadline by `STALL_GRACE`, answers
TIMEOUT for that database and the ones not run yet, and ends the runner (the pool starts
a fresh worker). The query stays on the main thread and the watchdog polls, so a job
pays for no thread switch: running the query on a thread of its own cost ~0.2 ms a job
on a loaded machine, a thread per job up to 2 ms, a forked child per query, which could
be killed instead, 2 ms (a whole job on three files is ~0.5 ms).

Stdlib only (part of the runner).
"""

from __future__ import annotations

import base64
import os
import sqlite3
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import codec
import rows
from messages import Kind, Tag

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
json_error_position json_pretty jsonb jsonb_array jsonb_extract jsonb_group_array jsonb_group_object
jsonb_insert jsonb_object jsonb_patch jsonb_remove jsonb_replace jsonb_set -> ->>
""".split()
)
# Eponymous virtual tables are built on a connection's first use, and building one runs
# internal statements the authorizer refuses (an UPDATE of sqlite_master): so the two
# read-only JSON ones are built before the authorizer is set, when the query names them;
# every other one (pragma_*, dbstat...) still fails to build.
_TABLE_FUNCTIONS = {"json_each": "SELECT 1 FROM json_each('[]')", "json_tree": "SELECT 1 FROM json_tree('[]')"}
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
STALL_GRACE = 0.5  # seconds past a query's deadline before its engine counts as stalled


def _authorizer(action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
    if action in _ALLOWED_ACTIONS:
        return _OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _ALLOWED_FUNCTIONS:
        return _OK
    return _DENY


def _open(path: str, query: str = "") -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA hard_heap_limit={_HEAP_BYTES}")  # before the authorizer forbids PRAGMAs
    for limit, value in _LIMITS.items():
        conn.setlimit(limit, value)
    lowered = query.lower()
    for name, warm_up in _TABLE_FUNCTIONS.items():
        if name in lowered:
            conn.execute(warm_up).fetchall()
    conn.set_authorizer(_authorizer)
    return conn


def _classify(error: BaseException) -> str:
    text = str(error).lower()
    if "interrupted" in text:
        return Kind.TIMEOUT
    if "not authorized" in text or "prohibited" in text:
        return Kind.REJECTED
    if isinstance(error, MemoryError) or "out of memory" in text:
        return Kind.MEMORY
    return Kind.ERROR


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


def _duckdb_records(job: dict[str, Any], packages: str) -> Iterator[dict[str, Any]]:
    """DuckDB, in this (forked, job-uid, rlimited) process: read-only, no external access,
    locked configuration, one thread, a memory limit, interrupted at the deadline. Each
    database's record comes as soon as it is there: the runner keeps the clock. `packages`:
    where the service's engine packages are mounted, read-only (the runner's `--packages`)."""
    import threading

    if packages:
        sys.path.insert(0, packages)
    import duckdb

    limits = job["limits"]
    deadline = time.monotonic() + limits["task_ms"] / 1000
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
            yield {"t": Tag.SQL, "i": index, "kind": Kind.DB_ERROR, "msg": str(exc)[:300]}
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
            record = {"kind": Kind.TIMEOUT, "msg": str(exc)[:300]}
        except duckdb.OutOfMemoryException as exc:
            record = {"kind": Kind.MEMORY, "msg": str(exc)[:300]}
        except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
            text = str(exc)
            record = {
                "kind": Kind.REJECTED if "disabled" in text or "ermission" in text else Kind.ERROR,
                "msg": text[:300],
            }
        except (duckdb.Error, MemoryError, ValueError, OverflowError) as exc:
            record = {"kind": Kind.ERROR, "msg": str(exc)[:300]}
        finally:
            timer.cancel()
            conn.close()
        record["ms"] = round((time.monotonic() - started) * 1000, 3)
        yield {"t": Tag.SQL, "i": index, **record}


def database_count(job: dict[str, Any]) -> int:
    return 1 if job.get("inline") else len(job["databases"])


def unanswered(records: list[dict[str, Any]], count: int, why: str) -> list[dict[str, Any]]:
    """TIMEOUT records for the databases a stalled engine did not answer: the first one ran
    past its deadline, the ones after it never ran."""
    answered = {r.get("i") for r in records if r.get("t") == Tag.SQL}
    missing = [i for i in range(count) if i not in answered]
    later = f"not run: the engine stalled on #{missing[0]}" if missing else ""
    return [
        {"t": Tag.SQL, "i": i, "kind": Kind.TIMEOUT, "msg": why if n == 0 else later} for n, i in enumerate(missing)
    ]


class _Watchdog:
    """The one watcher of a runner's SQLite jobs: a thread that wakes every `_POLL` seconds
    (no wake-up per job: the job runs on the runner's main thread) and, when the running
    job is past its database's deadline by `STALL_GRACE`, answers for it and ends the
    process (`answer` does both), since the main thread is stuck inside SQLite."""

    def __init__(self, answer: Callable[[list[dict[str, Any]]], None]) -> None:
        self.answer = answer
        self.lock = threading.Lock()
        self.job: dict[str, Any] | None = None
        self.records: list[dict[str, Any]] = []
        self.deadline = 0.0
        self.abandoned = False
        threading.Thread(target=self._watch, name="sql-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(_POLL)
            with self.lock:
                if self.job is None or time.monotonic() <= self.deadline + STALL_GRACE:
                    continue
                self.abandoned = True
                why = f"one engine step ran {STALL_GRACE:g} s past the deadline: stopped from outside the engine"
                records = [*self.records, *unanswered(self.records, database_count(self.job), why), {"t": Tag.DONE}]
            self.answer(records)


_POLL = 0.25  # seconds between the watchdog's looks: a stall is answered 0.5-0.75 s late
_watchdog: list[_Watchdog] = []  # started by this runner's first SQL job


def watched(job: dict[str, Any], jobdir: str, answer: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """The job's records. Should its engine stall, the watchdog calls `answer` with them
    (TIMEOUT for the databases not answered) from its own thread, and `answer` must end
    the process: this call then never returns."""
    if not _watchdog:
        _watchdog.append(_Watchdog(answer))
    dog = _watchdog[0]
    dog.answer = answer
    limits = job["limits"]
    records: list[dict[str, Any]] = []
    with dog.lock:
        dog.job, dog.records, dog.abandoned = job, records, False
        dog.deadline = time.monotonic() + min(limits["task_ms"], limits["test_ms"]) / 1000

    def begin(deadline: float) -> None:
        dog.deadline = deadline

    def emit(record: dict[str, Any]) -> None:
        with dog.lock:
            records.append(record)

    try:
        run(job, jobdir, begin, emit)
    except Exception:  # noqa: BLE001 - a runner bug is reported, and scored as ours
        emit({"t": Tag.INTERNAL_ERROR, "error": traceback.format_exc()[-2000:]})
    with dog.lock:
        stalled, dog.job = dog.abandoned, None
    if stalled:  # the watchdog has answered for this job and is ending the process
        threading.Event().wait()
    return records


def run(
    job: dict[str, Any], jobdir: str, begin: Callable[[float], None], emit: Callable[[dict[str, Any]], None]
) -> None:
    """The candidate query on each database (base first, then variants), in order: each
    database's deadline goes to `begin` before it runs, its record to `emit`."""
    limits = job["limits"]
    deadline = time.monotonic() + limits["task_ms"] / 1000
    paths = list(job["databases"])
    if job.get("inline"):
        inline = os.path.join(jobdir, "inline.sqlite")
        with open(inline, "wb") as handle:
            handle.write(base64.b64decode(job["inline"]))
        paths = [inline]
    for index, path in enumerate(paths):
        started = time.monotonic()
        until = min(deadline, started + limits["test_ms"] / 1000)
        begin(until)
        try:
            conn = _open(path, job["query"])
        except sqlite3.Error as exc:
            emit({"t": Tag.SQL, "i": index, "kind": Kind.DB_ERROR, "msg": str(exc)[:300]})
            continue
        try:
            record = execute(
                conn, job["query"], until, limits["sql_steps"], limits["max_rows"], limits["max_result_bytes"]
            )
        finally:
            conn.close()
        record["ms"] = round((time.monotonic() - started) * 1000, 3)
        emit({"t": Tag.SQL, "i": index, **record})
    emit({"t": Tag.DONE})
