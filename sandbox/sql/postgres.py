"""Run a candidate query on a real PostgreSQL server, inside the engine's permission system.

Here the wall is PostgreSQL itself, not a sandbox process: the query travels as data to
the server and runs there (1) as the registered login role, which should hold SELECT
only (`scripts`/tests create one; the service does not trust the DSN's owner to), (2) in
a `BEGIN READ ONLY` transaction that is always rolled back, (3) under `statement_timeout`
and `idle_in_transaction_session_timeout`, (4) through the extended protocol, which
refuses a second statement, with `search_path` pinned to the variant's schema. Rows are
fetched up to the same row and byte caps as SQLite. Records have the shape the sandbox
runner produces, so gold caching and scoring are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from sandbox.runner.rows import RowCap
from sandbox.wire import codec
from sandbox.wire.messages import Kind, Tag

_POOL_SIZE = 4


def _classify(error: Exception) -> str:
    import psycopg.errors as pg

    if isinstance(error, pg.QueryCanceled):
        return Kind.TIMEOUT
    if isinstance(error, (pg.InsufficientPrivilege, pg.ReadOnlySqlTransaction)):
        return Kind.REJECTED
    if isinstance(error, pg.OutOfMemory):
        return Kind.MEMORY
    if isinstance(error, pg.OperationalError):
        return Kind.DB_ERROR  # the server went away: ours, not the candidate's
    return Kind.ERROR


class PostgresExecutor:
    """A few warm connections per DSN, one query at a time on each."""

    def __init__(self) -> None:
        self._pools: dict[str, asyncio.Queue[Any]] = {}

    async def _connection(self, dsn: str) -> Any:
        import psycopg

        pool = self._pools.setdefault(dsn, asyncio.Queue())
        if pool.empty() and getattr(pool, "created", 0) < _POOL_SIZE:
            pool.created = getattr(pool, "created", 0) + 1  # type: ignore[attr-defined]
            return await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=10)
        return await pool.get()

    def _release(self, dsn: str, conn: Any) -> None:
        pool = self._pools[dsn]
        if conn.closed:
            pool.created -= 1  # type: ignore[attr-defined]
        else:
            pool.put_nowait(conn)

    async def _one(self, conn: Any, query: str, schema: str, limits: dict[str, int]) -> dict[str, Any]:
        from psycopg import sql

        timeout_ms = max(int(limits["test_ms"]), 1)
        await conn.execute("BEGIN READ ONLY")
        try:
            await conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout_ms)))
            await conn.execute(
                sql.SQL("SET LOCAL idle_in_transaction_session_timeout = {}").format(sql.Literal(timeout_ms * 2))
            )
            await conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
            async with conn.cursor() as cursor:
                await cursor.execute(query.encode(), binary=True)  # binary: the extended protocol
                columns = [d.name[:200] for d in cursor.description or ()]
                cap = RowCap(limits["max_rows"], limits["max_result_bytes"], codec.encode)
                while cap.add(await cursor.fetchmany(256)):
                    pass
            return cap.record(columns)
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")

    async def run(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        """The query on each schema (base first, then variants), as runner-style records."""
        import psycopg

        records: list[dict[str, Any]] = []
        dsn = job["dsn"]
        for index, schema in enumerate(job["schemas"]):
            started = time.monotonic()
            try:
                conn = await self._connection(dsn)
            except psycopg.Error as exc:
                records.append({"t": Tag.SQL, "i": index, "kind": Kind.DB_ERROR, "msg": str(exc)[:300]})
                continue
            try:
                record = await self._one(conn, job["query"], schema, job["limits"])
            except psycopg.Error as exc:
                record = {"kind": _classify(exc), "msg": str(exc).strip()[:300]}
            finally:
                self._release(dsn, conn)
            record["ms"] = round((time.monotonic() - started) * 1000, 3)
            records.append({"t": Tag.SQL, "i": index, **record})
        records.append({"t": Tag.DONE})
        return records

    async def close(self) -> None:
        for pool in self._pools.values():
            while not pool.empty():
                with contextlib.suppress(Exception):
                    await pool.get_nowait().close()
