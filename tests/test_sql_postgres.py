"""SQL tasks on a real PostgreSQL server (scripts/pg-up starts one; CI requires it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import grpc
import pytest

from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.languages import standard_languages
from sandbox.sql.plan import SqlContext
from sandbox.sql.postgres import PostgresExecutor
from sandbox.sql.registry import Registry
from sandbox.sql.samples import BASE, VARIANT_1, VARIANT_2
from tests.conftest import make_backend
from tests.helpers import finding_codes, limits, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

psycopg = pytest.importorskip("psycopg")
SUPER_DSN = os.environ.get("RFT_PG_DSN", "")
if not SUPER_DSN:
    if os.environ.get("RFT_REQUIRE_PG"):
        raise RuntimeError("RFT_PG_DSN is not set: run scripts/pg-up")
    pytest.skip("no PostgreSQL here (scripts/pg-up starts one)", allow_module_level=True)

DB = "rft_company"
ROLE = "rft_readonly"
TABLES = {
    "depts": "name text PRIMARY KEY, budget double precision",
    "employees": "id integer PRIMARY KEY, name text, dept text, salary double precision, manager_id integer, "
    "hired text",
    "sales": "employee_id integer, amount double precision, day text",
}
GOLD = "SELECT dept, COUNT(*) AS n FROM employees GROUP BY dept"


def _build() -> str:
    host = SUPER_DSN.rsplit("/", 1)[0]
    with psycopg.connect(SUPER_DSN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {DB}")
        admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN")
    with psycopg.connect(f"{host}/{DB}", autocommit=True) as conn:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for schema, data in (("base", BASE), ("variant1", VARIANT_1), ("variant2", VARIANT_2)):
            conn.execute(f"CREATE SCHEMA {schema}")
            for table, columns in TABLES.items():
                conn.execute(f"CREATE TABLE {schema}.{table} ({columns})")
                marks = ",".join(["%s"] * len(data[table][0]))
                with conn.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO {schema}.{table} VALUES ({marks})", data[table])
            conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {ROLE}")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {ROLE}")
    address = host.split("://", 1)[1].rsplit("@", 1)[-1]  # host:port, without the superuser
    assert address.startswith(("127.0.0.1", "localhost", "[::1]")), "tests talk to loopback only"
    return f"postgresql://{ROLE}@{address}/{DB}?schemas=base,variant1,variant2"


@pytest.fixture(scope="module")
def pg_dsn() -> str:
    return _build()


@pytest.fixture(scope="module")
def pg_client(pg_dsn) -> Iterator[SandboxClient]:
    context = SqlContext(registry=Registry.from_specs([f"company_pg={pg_dsn}"]))
    config = ServiceConfig(host="127.0.0.1", port=0, workers=1, audit_log=None)
    embedded = EmbeddedServer(config, make_backend("bwrap"), standard_languages(sql=context)).start()
    client = SandboxClient(ClientOptions(embedded.target, timeout=120))
    yield client
    client.close()
    embedded.stop()


def pg_task(task_id: str, completion: str, gold: str = GOLD, **spec) -> pb.Task:
    return pb.Task(
        id=task_id,
        language=pb.SQL,
        code=completion,
        sql=pb.SqlSpec(engine="postgres", database="company_pg", gold_sql=gold, **spec),
    )


def test_right_partly_right_and_coincidental_answers(pg_client):
    right = pg_client.score(pg_task("right", "SELECT COUNT(*) AS k, dept FROM employees GROUP BY dept"))
    assert (status_name(right), right.score) == ("PASSED", 1.0), right.message
    assert len(right.tests) == 3
    partial = pg_client.score(
        pg_task("partial", "SELECT dept, COUNT(*) FROM employees WHERE dept <> 'ops' GROUP BY dept")
    )
    assert status_name(partial) == "FAILED" and 0.1 < partial.score < 0.5
    coincidence = pg_client.score(
        pg_task(
            "coincidence",
            "SELECT name FROM employees WHERE salary > 60000",
            "SELECT name FROM employees WHERE dept = 'eng'",
        )
    )
    assert coincidence.score == pytest.approx(0.5), coincidence.message


def test_order_and_numeric_types(pg_client):
    ordered = "SELECT name, salary FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC, name"
    assert status_name(pg_client.score(pg_task("ord", ordered, ordered))) == "PASSED"
    assert status_name(pg_client.score(pg_task("ord-wrong", ordered.replace("DESC", "ASC"), ordered))) == "FAILED"
    avg = pg_client.score(
        pg_task(
            "avg",
            "SELECT SUM(salary) / COUNT(salary) FROM employees",
            "SELECT AVG(salary)::numeric(20, 6) FROM employees",
        )
    )
    assert status_name(avg) == "PASSED", avg.message  # numeric (Decimal) vs double, within tolerance


@pytest.mark.parametrize(
    "attack",
    [
        "DELETE FROM employees",
        "WITH d AS (DELETE FROM employees RETURNING *) SELECT * FROM d",
        "SELECT 1; DROP TABLE employees",
        "SELECT pg_sleep(30)",
        "SELECT pg_read_file('/etc/passwd')",
        "COPY employees TO '/tmp/x'",
        "SET statement_timeout = 0",
    ],
)
def test_attacks_are_rejected(pg_client, attack):
    result = pg_client.score(pg_task("attack", attack))
    assert status_name(result) == "REJECTED" and result.score == 0.0, result.message


def test_runaway_and_broken_queries(pg_client):
    task = pg_task("slow", "SELECT COUNT(*) FROM generate_series(1, 1000000000) a")
    task.limits.CopyFrom(limits(test_ms=500, task_ms=3000))
    slow = pg_client.score(task)
    assert (status_name(slow), slow.score) == ("TIMEOUT", 0.0), slow.message
    broken = pg_client.score(pg_task("broken", "SELECT nme FROM employees"))
    assert (status_name(broken), broken.score) == ("RUNTIME_ERROR", 0.0)
    empty = pg_client.score(pg_task("empty", "SELECT dept, 1 FROM employees WHERE false"))
    assert "empty_result" in finding_codes(empty) and empty.score < 0.5


def test_the_engine_refuses_writes_even_without_the_gate(pg_dsn):
    """Defense in depth: the executor alone (no static gate) cannot change the database."""
    registry = Registry.from_specs([f"company_pg={pg_dsn}"])
    database = registry.databases["company_pg"]
    job_limits = {"test_ms": 2000, "max_rows": 100, "max_result_bytes": 1 << 20}

    async def run(query: str) -> list[dict]:
        executor = PostgresExecutor()
        try:
            return await executor.run({"dsn": database.dsn, "schemas": ["base"], "query": query, "limits": job_limits})
        finally:
            await executor.close()

    for query in ("DELETE FROM employees", "CREATE TABLE base.x (a int)", "SELECT 1; DELETE FROM employees"):
        (record, _) = asyncio.run(run(query))
        assert record["kind"] in ("rejected", "error"), (query, record)
    (record, _) = asyncio.run(run("SELECT COUNT(*) FROM employees"))
    assert record["kind"] == "ok" and record["rows"] == [[len(BASE["employees"])]]


def test_bad_postgres_tasks(pg_client):
    with pytest.raises(grpc.RpcError) as info:
        pg_client.score(pg_task("bad-gold", "SELECT 1", "SELECT nope FROM employees"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("task.sql.gold_sql")
    wrong_engine = pb.Task(
        id="x", language=pb.SQL, code="SELECT 1", sql=pb.SqlSpec(engine="sqlite", database="company_pg", gold_sql=GOLD)
    )
    with pytest.raises(grpc.RpcError) as info:
        pg_client.score(wrong_engine)
    assert info.value.details().startswith("task.sql.engine")


def test_a_changed_schema_is_detected(pg_dsn):
    registry = Registry.from_specs([f"company_pg={pg_dsn}"])
    database = registry.databases["company_pg"]
    assert database.changed_files() == []
    host = SUPER_DSN.rsplit("/", 1)[0]
    with psycopg.connect(f"{host}/{DB}", autocommit=True) as conn:
        conn.execute("UPDATE variant1.depts SET budget = budget + 1 WHERE name = 'ops'")
        try:
            assert database.changed_files() == ["company_pg:variant1"]
        finally:
            conn.execute("UPDATE variant1.depts SET budget = budget - 1 WHERE name = 'ops'")
    assert database.changed_files() == []


def test_ties_json_and_exact_counts_on_postgres(pg_client):
    gold = "SELECT name FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC LIMIT 4"
    for tie_break in ("name", "name DESC"):  # Dee and Eve tie at the cut-off
        query = gold.replace("salary DESC", f"salary DESC, {tie_break}")
        result = pg_client.score(pg_task("tie", query, gold))
        assert (status_name(result), result.score) == ("PASSED", 1.0), (query, result.message)
    cheat = pg_client.score(
        pg_task("offset", "SELECT dept, COUNT(*) + 0.003 FROM employees GROUP BY dept", GOLD, rel_tol=1e-2)
    )
    assert status_name(cheat) == "FAILED", cheat.message
    json = pg_client.score(
        pg_task(
            "json",
            "SELECT o ->> 'd', (o ->> 'n')::int FROM "
            "(SELECT json_build_object('d', dept, 'n', COUNT(*)) AS o FROM employees GROUP BY dept) s",
            GOLD,
        )
    )
    assert (status_name(json), json.score) == ("PASSED", 1.0), json.message
