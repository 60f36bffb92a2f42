"""Automatic variants of a registered database that has none: build, bound, cache.

A database registered without variants lets a query that is right by coincidence (a
literal, `MAX(id)` equal to `COUNT(*)` on this data) pass as right. So the service
derives perturbed neighbours of it (`sandbox.sql.perturb`), in the spirit of test-suite
accuracy, and each task keeps those on which its gold query's answer changes
(`sandbox.sql.plan`).

When: at registration, i.e. service start-up, not on first use. The sandboxes bind each
database file read-only when their workers start, and checksums are taken at
registration; files that appear later would need a second mounting path, and a first
batch that waits minutes for a build would time trainers out. The cache makes every
later start free.

Bounds: a time budget for the whole build (`budget_s`; the variants finished by then are
used and cached, the log says how many), a byte cap for all the variants of a database
together (`max_mb`; tables are sampled down so each variant fits its share, and a variant
that would overflow the cap is not kept). The build never raises: any failure logs a
warning and leaves the database with no automatic variants, as before.

Cache: `<cache_dir>/<name>-<key>/`, where the key hashes the base's SHA-256, the engine,
the settings that shape the content and the builder's version; a manifest written last
names the files and their checksums (a file that differs is rebuilt). An exclusive lock
per entry makes concurrent starts (two services, a CLI run) build it once.

Engines: SQLite (schema copied statement by statement: tables, indexes, views and
triggers, triggers created after the rows so none fires) and DuckDB (`COPY FROM DATABASE
... (SCHEMA)`, then the rows in an order where parents precede children). PostgreSQL:
none — the service never writes to a user's server; register variant schemas instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.sql.perturb import ForeignKey, Perturber, TableData

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
MiB = 1 << 20
_MIN_SAMPLE_ROWS = 50  # a sampled table keeps at least this many rows (or all it has)
_LOCK_POLL_S = 0.2


class BuildTimeout(Exception):
    """The build's time budget is spent."""


class Unsupported(Exception):
    """The database uses something the builder does not copy faithfully (a virtual table)."""


@dataclass(frozen=True)
class VariantSettings:
    """Per registration: `NAME=PATH?variants=auto&count=8&seed=0&keep=4&max_mb=128&budget_s=120`."""

    mode: str = "auto"  # auto: build when no variants are registered | none
    count: int = 8  # variants built
    seed: int = 0
    keep: int = 4  # per task, at most this many variants on which the gold's answer changes
    max_mb: int = 128  # all automatic variants of the database together
    budget_s: float = 120.0  # the whole build

    def content_key(self, engine: str, checksum: str) -> str:
        """What the files depend on (not `keep` or the budget, which only decide how many are used)."""
        import numpy

        shape = {"v": BUILDER_VERSION, "numpy": numpy.__version__, "engine": engine, "base": checksum}
        shape |= {"count": self.count, "seed": self.seed}
        return hashlib.sha256(json.dumps({**shape, "max_mb": self.max_mb}, sort_keys=True).encode()).hexdigest()[:20]


_LIMITS: dict[str, tuple[type, float, float]] = {
    "count": (int, 1, 64),
    "seed": (int, 0, 2**63 - 1),
    "keep": (int, 1, 64),
    "max_mb": (int, 1, 1 << 20),
    "budget_s": (float, 0, 86_400),
}
OPTIONS = ("variants", *_LIMITS)


def parse_settings(options: dict[str, str], where: str) -> VariantSettings:
    """Settings from a registration's `?key=value&...`; ValueError naming the bad option."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"{where}: unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    mode = options.get("variants", "auto")
    if mode not in ("auto", "none"):
        raise ValueError(f"{where}: variants={mode!r}: use variants=auto or variants=none")
    values: dict[str, Any] = {"mode": mode}
    for key, (kind, low, high) in _LIMITS.items():
        if key not in options:
            continue
        try:
            value = kind(options[key])
        except ValueError:
            raise ValueError(f"{where}: {key}={options[key]!r} is not {'an integer' if kind is int else 'a number'}")
        if not (low <= value <= high) or (kind is float and not math.isfinite(value)):
            raise ValueError(f"{where}: {key}={options[key]} must be between {low:g} and {high:g}")
        values[key] = value
    settings = VariantSettings(**values)
    if settings.keep > settings.count:
        raise ValueError(f"{where}: keep={settings.keep} exceeds count={settings.count}")
    return settings


def default_cache_dir() -> Path:
    """`$RFT_SANDBOX_CACHE`, else the user's cache directory (XDG), + `sql-variants`."""
    root = os.environ.get("RFT_SANDBOX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rft-sandbox"
    )
    return Path(root) / "sql-variants"


@dataclass(frozen=True)
class Built:
    files: tuple[Path, ...]
    checksums: tuple[str, ...]
    cached: bool  # taken from the cache, nothing built
    note: str = ""  # why there are fewer than asked for ("" if none)


def build_variants(
    name: str, base: Path, engine: str, checksum: str, settings: VariantSettings, cache_dir: Path
) -> Built:
    """The automatic variants of `base` (built, or from the cache). Never raises: a
    failure is logged and gives no variants."""
    started = time.monotonic()
    deadline = started + settings.budget_s
    entry = cache_dir / f"{_safe(name)}-{settings.content_key(engine, checksum)}"
    fields: dict[str, Any] = {"database": name, "cache": str(entry)}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with _locked(entry.with_name(entry.name + ".lock"), deadline):
            cached = _from_cache(entry, settings)
            if cached is not None:
                log.info("sql_variants_cached", extra={"fields": {**fields, "variants": len(cached.files)}})
                return cached
            built = _build(name, base, engine, settings, entry, deadline)
    except BuildTimeout:
        log.warning(
            "sql_variants_unavailable",
            extra={"fields": {**fields, "reason": f"waited {settings.budget_s:g} s for another build's lock"}},
        )
        return Built((), (), False, "another build held the cache")
    except Exception as exc:  # noqa: BLE001 - a failed build must never stop the service
        log.warning("sql_variants_unavailable", extra={"fields": {**fields, "reason": f"{type(exc).__name__}: {exc}"}})
        return Built((), (), False, f"build failed: {exc}")
    seconds = round(time.monotonic() - started, 3)
    level = logging.WARNING if built.note else logging.INFO
    log.log(
        level,
        "sql_variants_built",
        extra={"fields": {**fields, "variants": len(built.files), "seconds": seconds, "note": built.note}},
    )
    return built


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


@contextlib.contextmanager
def _locked(path: Path, deadline: float) -> Iterator[None]:
    """An exclusive flock (it works between processes and between threads alike)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise BuildTimeout from None
                time.sleep(_LOCK_POLL_S)
        yield
    finally:
        os.close(fd)  # releases the lock


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_cache(entry: Path, settings: VariantSettings) -> Built | None:
    try:
        manifest = json.loads((entry / "manifest.json").read_text(encoding="utf-8"))
        if not manifest.get("complete") and settings.budget_s > float(manifest.get("budget_s", 0)):
            return None  # cut short by a smaller budget than this one: try again
        files = tuple(entry / f["name"] for f in manifest["files"])
        checksums = tuple(str(f["sha256"]) for f in manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if any(_digest(path) != digest for path, digest in zip(files, checksums, strict=True)):
        log.warning("sql_variants_cache_changed", extra={"fields": {"cache": str(entry)}})
        return None
    return Built(files, checksums, True, str(manifest.get("note", "")))


def _build(name: str, base: Path, engine: str, settings: VariantSettings, entry: Path, deadline: float) -> Built:
    adapter = _ENGINES[engine]

    def check() -> None:
        if time.monotonic() > deadline:
            raise BuildTimeout

    staging = entry.with_name(f"{entry.name}.tmp-{os.getpid()}-{random.getrandbits(32):08x}")
    staging.mkdir()
    files: list[dict[str, Any]] = []
    note, complete = "", True
    try:
        try:
            share = settings.max_mb * MiB // settings.count
            fraction = min(1.0, share / max(base.stat().st_size, 1))
            schema = adapter.read(base, fraction, settings.seed, check)
            perturber = Perturber(schema.tables)
            total = 0
            for index in range(1, settings.count + 1):
                target = staging / f"{base.stem}.auto{index:02d}{base.suffix}"
                adapter.write(schema, perturber.variant(settings.seed, index, check), target, check)
                size = target.stat().st_size
                if total + size > settings.max_mb * MiB:
                    target.unlink()
                    note = f"{index - 1} of {settings.count} variants fit in max_mb={settings.max_mb}"
                    break
                total += size
                files.append({"name": target.name, "bytes": size, "sha256": _digest(target)})
        except BuildTimeout:
            for leftover in staging.iterdir():
                if leftover.name not in {f["name"] for f in files}:
                    leftover.unlink()
            note = f"{len(files)} of {settings.count} variants built within budget_s={settings.budget_s:g}"
            complete = False
        except Unsupported as exc:
            note = f"unsupported: {exc}"  # cached: the same database gets the same answer
            files = []
            for leftover in staging.iterdir():
                leftover.unlink()
        manifest = {"files": files, "complete": complete, "note": note, "budget_s": settings.budget_s}
        (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.rename(staging, entry)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return Built(tuple(entry / f["name"] for f in files), tuple(f["sha256"] for f in files), False, note)


# ---------------------------------------------------------------- engines


@dataclass
class Schema:
    """What an engine adapter read from the base: the rows, and how to recreate the rest."""

    tables: dict[str, TableData]
    statements: list[tuple[str, str]]  # (kind, SQL) of the base's own schema, in creation order
    settings: dict[str, Any]


def _sample(count: int, fraction: float, rng: random.Random) -> list[int] | None:
    """Sorted positions to keep of `count` rows, or None for all of them."""
    keep = count if fraction >= 1 else max(min(count, _MIN_SAMPLE_ROWS), math.ceil(count * fraction))
    return None if keep >= count else sorted(rng.sample(range(count), keep))


def _take(cursor: Any, keep: list[int] | None, check: Callable[[], None]) -> list[tuple[Any, ...]]:
    """The rows at the sorted positions `keep` (all if None), streamed: memory stays
    bounded by the sample, not the table."""
    rows: list[tuple[Any, ...]] = []
    wanted = iter(keep) if keep is not None else None
    next_wanted = next(wanted, None) if wanted is not None else 0
    position = 0
    while next_wanted is not None:
        check()
        block = cursor.fetchmany(4096)
        if not block:
            break
        for row in block:
            if wanted is None:
                rows.append(tuple(row))
            elif position == next_wanted:
                rows.append(tuple(row))
                next_wanted = next(wanted, None)
                if next_wanted is None:
                    break
            position += 1
    return rows


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Sqlite:
    @staticmethod
    def read(base: Path, fraction: float, seed: int, check: Callable[[], None]) -> Schema:
        conn = sqlite3.connect(f"file:{base}?mode=ro", uri=True)
        conn.set_progress_handler(lambda: 1 if _late(check) else 0, 100_000)
        try:
            entries = conn.execute(
                "SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid"
            ).fetchall()
            statements: list[tuple[str, str]] = []
            tables: dict[str, TableData] = {}
            for kind, name, sql in entries:
                if kind == "table" and name.startswith("sqlite_"):
                    continue
                if kind == "table" and sql.upper().startswith("CREATE VIRTUAL"):
                    raise Unsupported(f"virtual table {name!r}")
                statements.append((kind, sql))
                if kind == "table":
                    rng = random.Random(f"rft-sample:{seed}:{name}")  # noqa: S311 - reproducible, not secret
                    tables[name] = _sqlite_table(conn, name, fraction, rng, check)
            settings = {
                key: conn.execute(f"PRAGMA {key}").fetchone()[0]
                for key in ("encoding", "page_size", "user_version", "application_id")
            }
        except sqlite3.OperationalError:
            if _late(check):
                raise BuildTimeout from None
            raise
        finally:
            conn.close()
        return Schema(tables, statements, settings)

    @staticmethod
    def write(schema: Schema, rows: dict[str, list[tuple]], target: Path, check: Callable[[], None]) -> None:
        conn = sqlite3.connect(target, isolation_level=None)
        try:
            conn.execute(f"PRAGMA encoding = '{schema.settings['encoding']}'")
            conn.execute(f"PRAGMA page_size = {int(schema.settings['page_size'])}")
            conn.execute("PRAGMA journal_mode = OFF")
            conn.execute("PRAGMA synchronous = OFF")
            conn.execute("BEGIN")
            for kind, sql in schema.statements:
                if kind == "table":
                    conn.execute(sql)
            for name, table in schema.tables.items():
                check()
                columns = ", ".join(_quote(c) for c in table.columns)
                marks = ", ".join("?" * len(table.columns))
                conn.executemany(f"INSERT OR IGNORE INTO {_quote(name)} ({columns}) VALUES ({marks})", rows[name])  # noqa: S608 - quoted identifiers
            for kind, sql in schema.statements:
                if kind != "table":  # indexes, views, triggers: after the rows, so no trigger fires
                    conn.execute(sql)
            conn.execute(f"PRAGMA user_version = {int(schema.settings['user_version'])}")
            conn.execute(f"PRAGMA application_id = {int(schema.settings['application_id'])}")
            conn.execute("COMMIT")
        finally:
            conn.close()


def _late(check: Callable[[], None]) -> bool:
    try:
        check()
    except BuildTimeout:
        return True
    return False


def _sqlite_table(
    conn: sqlite3.Connection, name: str, fraction: float, rng: random.Random, check: Callable[[], None]
) -> TableData:
    quoted = _quote(name)
    info = conn.execute(f"PRAGMA table_xinfo({quoted})").fetchall()  # cid name type notnull dflt pk hidden
    columns = [row for row in info if row[6] == 0]  # generated columns are computed, not written
    names = [row[1] for row in columns]
    primary = tuple(names.index(row[1]) for row in sorted(columns, key=lambda r: r[5]) if row[5] > 0)
    unique = [primary] if primary else []
    may_duplicate = True
    for index in conn.execute(f"PRAGMA index_list({quoted})").fetchall():  # seq name unique origin partial
        if not index[2] or index[3] == "pk":
            continue
        parts = [r[2] for r in conn.execute(f"PRAGMA index_info({_quote(index[1])})").fetchall()]
        if index[4] or any(p not in names for p in parts):
            may_duplicate = False  # a partial or expression index: uniqueness not known column by column
            continue
        unique.append(tuple(names.index(p) for p in parts))
    groups: dict[int, list[tuple[Any, ...]]] = {}
    for row in conn.execute(f"PRAGMA foreign_key_list({quoted})").fetchall():  # id seq table from to ...
        groups.setdefault(row[0], []).append(row)
    foreign = []
    for parts in groups.values():
        parts.sort(key=lambda r: r[1])
        if all(p[3] in names for p in parts):
            targets = tuple(p[4] for p in parts) if all(p[4] for p in parts) else ()
            foreign.append(ForeignKey(tuple(names.index(p[3]) for p in parts), parts[0][2], targets))
    count = conn.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]  # noqa: S608 - quoted identifiers
    cursor = conn.execute(f"SELECT {', '.join(_quote(n) for n in names)} FROM {quoted}")  # noqa: S608 - quoted identifiers
    rows = _take(cursor, _sample(count, fraction, rng), check)
    nullable = [not row[3] and row[5] == 0 for row in columns]
    return TableData(name, names, nullable, unique, foreign, rows, may_duplicate, primary)


class _Duckdb:
    @staticmethod
    def read(base: Path, fraction: float, seed: int, check: Callable[[], None]) -> Schema:
        import duckdb

        conn = duckdb.connect(str(base), read_only=True)
        try:
            listed = conn.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() "
                "WHERE database_name = current_database() AND NOT temporary AND NOT internal ORDER BY table_oid"
            ).fetchall()
            tables = {}
            for schema, table in listed:
                check()
                name = f"{schema}.{table}"
                rng = random.Random(f"rft-sample:{seed}:{name}")  # noqa: S311 - reproducible, not secret
                tables[name] = _duckdb_table(conn, schema, table, fraction, rng, check)
        finally:
            conn.close()
        return Schema(tables, [], {"base": str(base)})

    @staticmethod
    def write(schema: Schema, rows: dict[str, list[tuple]], target: Path, check: Callable[[], None]) -> None:
        import duckdb

        conn = duckdb.connect()
        try:
            conn.execute("ATTACH ? AS src (READ_ONLY)", [schema.settings["base"]])
            conn.execute("ATTACH ? AS dst", [str(target)])
            conn.execute("COPY FROM DATABASE src TO dst (SCHEMA)")
            for name in _duckdb_order(schema.tables):
                check()
                table = schema.tables[name]
                qualified = "dst." + ".".join(_quote(part) for part in name.split(".", 1))
                columns = ", ".join(_quote(c) for c in table.columns)
                marks = ", ".join("?" * len(table.columns))
                conflict = " ON CONFLICT DO NOTHING" if table.unique else ""
                insert = f"INSERT INTO {qualified} ({columns}) VALUES ({marks}){conflict}"  # noqa: S608 - quoted identifiers
                for row in rows[name]:
                    with contextlib.suppress(duckdb.ConstraintException, duckdb.ConversionException):
                        conn.execute(insert, list(row))  # a row a CHECK refuses is one more dropped
            conn.execute("DETACH dst")
        finally:
            conn.close()


def _duckdb_table(
    conn: Any, schema: str, table: str, fraction: float, rng: random.Random, check: Callable[[], None]
) -> TableData:
    columns = conn.execute(
        "SELECT column_name, is_nullable FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [schema, table],
    ).fetchall()
    names = [c[0] for c in columns]
    constraints = conn.execute(
        "SELECT constraint_type, constraint_column_names, referenced_table, referenced_column_names "
        "FROM duckdb_constraints() WHERE database_name = current_database() AND schema_name = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    primary: tuple[int, ...] = ()
    unique, foreign = [], []
    for kind, parts, parent, targets in constraints:
        if kind in ("PRIMARY KEY", "UNIQUE") and all(p in names for p in parts):
            positions = tuple(names.index(p) for p in parts)
            unique.append(positions)
            primary = positions if kind == "PRIMARY KEY" else primary
        elif kind == "FOREIGN KEY" and parent and all(p in names for p in parts):
            foreign.append(ForeignKey(tuple(names.index(p) for p in parts), f"{schema}.{parent}", tuple(targets)))
    qualified = f"{_quote(schema)}.{_quote(table)}"
    count = conn.execute(f"SELECT COUNT(*) FROM {qualified}").fetchone()[0]  # noqa: S608 - quoted identifiers
    cursor = conn.execute(f"SELECT {', '.join(_quote(n) for n in names)} FROM {qualified}")  # noqa: S608 - quoted identifiers
    rows = _take(cursor, _sample(count, fraction, rng), check)
    nullable = [c[1] and names.index(c[0]) not in primary for c in columns]
    return TableData(f"{schema}.{table}", names, nullable, unique, foreign, rows, True, primary)


def _duckdb_order(tables: dict[str, TableData]) -> list[str]:
    """Parents before children: DuckDB checks every foreign key on insert."""
    done: list[str] = []
    waiting = dict(tables)
    while waiting:
        ready = [
            n for n, t in waiting.items() if all(fk.parent not in waiting or fk.parent == n for fk in t.foreign)
        ] or list(waiting)
        for name in ready:
            done.append(name)
            del waiting[name]
    return done


_ENGINES: dict[str, Any] = {"sqlite": _Sqlite, "duckdb": _Duckdb}
