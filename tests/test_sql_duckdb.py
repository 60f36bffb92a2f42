"""SQL tasks on DuckDB files: real engine, in the sandbox, both isolation backends."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.languages import standard_languages
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry
from sandbox.sql.samples import BASE, VARIANT_1, VARIANT_2
from tests.conftest import make_backend
from tests.helpers import limits, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

duckdb = pytest.importorskip("duckdb")
GOLD = "SELECT dept, COUNT(*) AS n FROM employees GROUP BY dept"
COLUMNS = {
    "depts": "name VARCHAR PRIMARY KEY, budget DOUBLE",
    "employees": "id INTEGER PRIMARY KEY, name VARCHAR, dept VARCHAR, salary DOUBLE, manager_id INTEGER, hired VARCHAR",
    "sales": "employee_id INTEGER, amount DOUBLE, day VARCHAR",
}


def build(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (("base", BASE), ("variant1", VARIANT_1), ("variant2", VARIANT_2)):
        conn = duckdb.connect(str(directory / f"{name}.duckdb"))
        for table, columns in COLUMNS.items():
            conn.execute(f"CREATE TABLE {table} ({columns})")
            marks = ",".join("?" * len(data[table][0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", data[table])
        conn.execute("CHECKPOINT")
        conn.close()
    return directory


@pytest.fixture(scope="module")
def duck_dir(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("duck"))


@pytest.fixture(scope="module")
def duck_client(backend_name: str, duck_dir: Path) -> Iterator[SandboxClient]:
    context = SqlContext(registry=Registry.from_specs([f"company_duck={duck_dir}"]))
    config = ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=None)
    embedded = EmbeddedServer(config, make_backend(backend_name), standard_languages(sql=context)).start()
    client = SandboxClient(ClientOptions(embedded.target, timeout=120))
    yield client
    client.close()
    embedded.stop()


def duck_task(task_id: str, completion: str, gold: str = GOLD, **spec) -> pb.Task:
    return pb.Task(
        id=task_id,
        language=pb.SQL,
        code=completion,
        sql=pb.SqlSpec(engine="duckdb", database="company_duck", gold_sql=gold, **spec),
    )


def test_right_partial_and_coincidental(duck_client):
    right = duck_client.score(duck_task("right", "SELECT COUNT(*), dept FROM employees GROUP BY ALL"))
    assert (status_name(right), right.score) == ("PASSED", 1.0), right.message
    partial = duck_client.score(
        duck_task("partial", "SELECT dept, COUNT(*) FROM employees WHERE dept <> 'ops' GROUP BY dept")
    )
    assert status_name(partial) == "FAILED" and 0.1 < partial.score < 0.5
    coincidence = duck_client.score(
        duck_task(
            "coincidence",
            "SELECT name FROM employees WHERE salary > 60000",
            "SELECT name FROM employees WHERE dept = 'eng'",
        )
    )
    assert coincidence.score == pytest.approx(0.5), coincidence.message


@pytest.mark.parametrize(
    "attack",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "COPY employees TO '/tmp/out.csv'",
        "INSTALL httpfs",
        "ATTACH '/tmp/x.duckdb' AS x",
        "SELECT getenv('HOME')",
    ],
)
def test_attacks_are_rejected(duck_client, attack):
    result = duck_client.score(duck_task("attack", attack))
    assert status_name(result) == "REJECTED" and result.score == 0.0, result.message


def test_runaway_query_times_out(duck_client):
    task = duck_task("slow", "SELECT COUNT(*) FROM range(100000000000) a")
    task.limits.CopyFrom(limits(test_ms=800, task_ms=5000))
    result = duck_client.score(task)
    assert (status_name(result), result.score) == ("TIMEOUT", 0.0), result.message


HOST_PACKAGES = ""  # no packages dir: here, outside a sandbox, duckdb is the host's


def test_the_engine_refuses_files_and_writes_even_without_the_gate(duck_dir):
    """Defense in depth: DuckDB's own settings stop what the static gate would have refused."""
    root = Path(__file__).resolve().parents[1] / "sandbox"
    sys.path[:0] = [str(root / "runner"), str(root / "wire")]  # as the runner finds them
    import sqlrun

    job_limits = {"task_ms": 5000, "test_ms": 5000, "max_rows": 100, "max_result_bytes": 1 << 20}
    for query in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "CREATE TABLE x (a INT)",
        "COPY (SELECT 1) TO '/tmp/rft-duck-out.csv'",
        "SET enable_external_access = true",
    ):
        (record,) = sqlrun._duckdb_records(
            {"databases": [str(duck_dir / "base.duckdb")], "query": query, "limits": job_limits}, HOST_PACKAGES
        )
        assert record["kind"] in ("rejected", "error"), (query, record)
    assert not Path("/tmp/rft-duck-out.csv").exists()
    (record,) = sqlrun._duckdb_records(
        {"databases": [str(duck_dir / "base.duckdb")], "query": "SELECT COUNT(*) FROM employees", "limits": job_limits},
        HOST_PACKAGES,
    )
    assert record["kind"] == "ok" and record["rows"] == [[len(BASE["employees"])]], json.dumps(record)


def test_type_exact_counts_ties_and_json_on_duckdb(duck_client):
    cheat = duck_client.score(
        duck_task("offset", "SELECT dept, COUNT(*) + 0.003 FROM employees GROUP BY dept", rel_tol=1e-2)
    )
    assert status_name(cheat) == "FAILED", cheat.message
    gold = "SELECT name FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC LIMIT 4"
    for tie_break in ("name", "name DESC"):  # Dee and Eve tie at the cut-off
        query = gold.replace("salary DESC", f"salary DESC, {tie_break}")
        result = duck_client.score(duck_task("tie", query, gold))
        assert (status_name(result), result.score) == ("PASSED", 1.0), (query, result.message)
    json = duck_client.score(
        duck_task(
            "json",
            "SELECT o ->> 'd', CAST(o ->> 'n' AS INTEGER) FROM "
            "(SELECT json_object('d', dept, 'n', COUNT(*)) AS o FROM employees GROUP BY dept)",
        )
    )
    assert (status_name(json), json.score) == ("PASSED", 1.0), json.message


def test_an_engine_step_past_its_deadline_is_a_timeout(duck_client):
    # one regexp_replace over a 40 MB string: DuckDB sees its interrupt only seconds later
    task = duck_task("stall", "SELECT length(regexp_replace(repeat('a', 40000000), 'a', 'bb', 'g'))")
    task.limits.CopyFrom(limits(test_ms=1000, task_ms=3000))
    result = duck_client.score(task)
    assert (status_name(result), result.score) == ("TIMEOUT", 0.0), result.message
    assert result.timings.total_ms < 3000, result.timings  # the runner's deadline, not the engine's
    right = duck_client.score(duck_task("after", GOLD))
    assert status_name(right) == "PASSED", right.message
