"""SQL tasks end to end: real SQLite databases, real sandboxes, real gRPC."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import grpc
import pytest

from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.languages import standard_languages
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry
from sandbox.sql.samples import build_company, inline_database
from tests.conftest import make_backend
from tests.helpers import finding_codes, limits, status_name, wait_for
from trainer_plugin.client import ClientOptions, SandboxClient

GOLD_BY_DEPT = "SELECT dept, COUNT(*) AS n FROM employees GROUP BY dept"


@pytest.fixture(scope="module")
def company(tmp_path_factory: pytest.TempPathFactory):
    return build_company(tmp_path_factory.mktemp("company"))


@pytest.fixture(scope="module")
def sql_server(backend_name: str, company, tmp_path_factory) -> Iterator[EmbeddedServer]:
    registry = Registry.from_specs([f"company={company}", f"single={company / 'base.sqlite'}"])
    audit = tmp_path_factory.mktemp("sql-audit") / "audit.jsonl"
    config = ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=str(audit))
    embedded = EmbeddedServer(
        config, make_backend(backend_name), standard_languages(sql=SqlContext(registry=registry))
    ).start()
    yield embedded
    embedded.stop()


@pytest.fixture(scope="module")
def sql_client(sql_server) -> Iterator[SandboxClient]:
    client = SandboxClient(ClientOptions(sql_server.target, timeout=120))
    yield client
    client.close()


def sql_task(task_id: str, completion: str, gold: str = GOLD_BY_DEPT, database: str = "company", **spec) -> pb.Task:
    return pb.Task(
        id=task_id, language=pb.SQL, code=completion, sql=pb.SqlSpec(database=database, gold_sql=gold, **spec)
    )


def score(client: SandboxClient, task: pb.Task) -> pb.Result:
    return client.score(task)


@pytest.mark.parametrize(
    "completion",
    [
        GOLD_BY_DEPT,
        "SELECT COUNT(*) AS how_many, dept FROM employees GROUP BY dept",  # columns reordered and renamed
        "Here you go:\n```sql\nSELECT dept, count(id) FROM employees GROUP BY 1;\n```\n",  # raw completion
        "SELECT d.name, (SELECT COUNT(*) FROM employees e WHERE e.dept = d.name) FROM depts d",
    ],
)
def test_correct_queries_score_one(sql_client, completion):
    result = score(sql_client, sql_task("right", completion))
    assert (status_name(result), result.score) == ("PASSED", 1.0), result.message
    assert [t.passed for t in result.tests] == [True, True, True]  # base + two variants


def test_wrong_query_gets_dense_partial_credit(sql_client):
    # right shape, one department missing: 2 of 3 gold rows
    result = score(
        sql_client, sql_task("partial", "SELECT dept, COUNT(*) FROM employees WHERE dept <> 'ops' GROUP BY dept")
    )
    assert status_name(result) == "FAILED"
    assert 0.1 < result.score < 0.5
    totally_wrong = score(sql_client, sql_task("wrong", "SELECT name FROM depts WHERE budget < 0"))
    assert status_name(totally_wrong) == "FAILED" and totally_wrong.score == pytest.approx(0.1)
    assert totally_wrong.score < result.score


def test_coincidental_match_is_caught_by_a_variant(sql_client):
    gold = "SELECT name FROM employees WHERE dept = 'eng'"
    result = score(sql_client, sql_task("coincidence", "SELECT name FROM employees WHERE salary > 60000", gold))
    assert status_name(result) == "FAILED" and result.score == pytest.approx(0.5), result.message
    assert [t.passed for t in result.tests] == [True, False, False]
    base_only = score(
        sql_client,
        sql_task("coincidence-base", "SELECT name FROM employees WHERE salary > 60000", gold, base_only=True),
    )
    assert status_name(base_only) == "PASSED"


def test_order_matters_only_when_the_gold_orders(sql_client):
    ordered = "SELECT name, salary FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC, name"
    same_order = score(sql_client, sql_task("ord-same", ordered, ordered))
    assert status_name(same_order) == "PASSED"
    other_order = score(sql_client, sql_task("ord-other", ordered.replace("DESC", "ASC"), ordered))
    assert status_name(other_order) == "FAILED"
    unordered_gold = "SELECT name, salary FROM employees WHERE salary IS NOT NULL"
    any_order = score(sql_client, sql_task("ord-any", ordered.replace("DESC", "ASC"), unordered_gold))
    assert status_name(any_order) == "PASSED"
    forced = score(
        sql_client,
        sql_task("ord-forced", ordered.replace("DESC", "ASC"), unordered_gold, order=pb.SqlSpec.ORDER_MATTERS),
    )
    assert status_name(forced) == "FAILED"


def test_floats_compare_with_tolerance_and_nulls_and_duplicates_count(sql_client):
    gold = "SELECT AVG(salary) FROM employees"
    other_way = "SELECT SUM(salary) / COUNT(salary) FROM employees"
    assert status_name(score(sql_client, sql_task("float", other_way, gold))) == "PASSED"
    dup_gold = "SELECT employee_id, amount FROM sales"
    distinct = score(sql_client, sql_task("dups", "SELECT DISTINCT employee_id, amount FROM sales", dup_gold))
    assert status_name(distinct) == "FAILED"  # a multiset: the duplicate sale matters
    nulls = score(
        sql_client,
        sql_task(
            "nulls", "SELECT name, manager_id FROM employees", "SELECT name, manager_id FROM employees ORDER BY id"
        ),
    )
    assert status_name(nulls) == "PASSED"


@pytest.mark.parametrize(
    "attack",
    [
        "DROP TABLE employees",
        "DELETE FROM employees",
        "SELECT 1; DROP TABLE employees",
        "ATTACH DATABASE '/tmp/x.sqlite' AS x",
        "PRAGMA writable_schema = 1",
        "SELECT load_extension('/tmp/evil')",
        "CREATE TEMP TABLE t AS SELECT * FROM employees",
        "BEGIN",
        "WITH x AS (SELECT 1) INSERT INTO depts SELECT 'x', 1",
    ],
)
def test_attacks_are_rejected_before_running(sql_client, attack):
    result = score(sql_client, sql_task("attack", attack))
    assert status_name(result) == "REJECTED" and result.score == 0.0, result.message
    assert any(f.severity == pb.CRITICAL for f in result.findings)
    assert result.timings.run_ms == 0  # never reached a sandbox


@pytest.mark.parametrize(
    ("query", "status"),
    [
        # pass the static gate, stopped by the engine's own limits
        (
            "SELECT COUNT(*) FROM employees a, employees b, employees c, employees d, employees e, employees f, "
            "employees g, employees h, employees i, employees j",
            "TIMEOUT",
        ),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT COUNT(*) FROM c", "TIMEOUT"),
        ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c", "OUTPUT_LIMIT"),
        ("SELECT randomblob(1000000000)", "RUNTIME_ERROR"),
        ("SELECT * FROM no_such_table", "RUNTIME_ERROR"),
    ],
)
def test_runaway_queries_are_stopped_and_score_zero(sql_client, query, status):
    task = sql_task("runaway", query)
    task.limits.CopyFrom(limits(test_ms=1500, task_ms=4000))
    result = score(sql_client, task)
    assert (status_name(result), result.score) == (status, 0.0), result.message
    assert result.timings.run_ms < 10_000


def test_garbage_is_a_syntax_error(sql_client):
    result = score(sql_client, sql_task("garbage", "I think the answer is forty-two."))
    assert status_name(result) == "SYNTAX_ERROR" and result.score == 0.0


def test_an_error_is_never_an_empty_result(sql_client):
    empty_gold = "SELECT name FROM employees WHERE salary > 10000000"
    error = score(sql_client, sql_task("err", "SELECT nme FROM employees", empty_gold))
    assert status_name(error) == "RUNTIME_ERROR" and error.score == 0.0
    empty = score(sql_client, sql_task("empty", "SELECT name FROM employees WHERE 0", empty_gold))
    assert "empty_result" in finding_codes(empty)
    assert empty.score < 1.0


def test_findings_for_constant_and_star_answers(sql_client):
    constant = score(
        sql_client, sql_task("const", "SELECT 'eng', 2 UNION ALL SELECT 'ops', 2 UNION ALL SELECT 'sales', 2")
    )
    assert "constant_query" in finding_codes(constant)
    star = score(sql_client, sql_task("star", "SELECT * FROM employees", "SELECT name, dept FROM employees"))
    assert "select_star_superset" in finding_codes(star) and star.score < 1.0


def test_expected_rows_and_inline_databases(sql_client, tmp_path):
    expected = json.dumps([["eng", 2], ["ops", 2], ["sales", 2]])
    task = pb.Task(
        id="rows", language=pb.SQL, code=GOLD_BY_DEPT, sql=pb.SqlSpec(database="company", expected_json=expected)
    )
    assert status_name(sql_client.score(task)) == "PASSED"
    inline = pb.Task(
        id="inline",
        language=pb.SQL,
        code=GOLD_BY_DEPT,
        sql=pb.SqlSpec(inline_sqlite=inline_database(tmp_path / "x.sqlite"), gold_sql=GOLD_BY_DEPT),
    )
    result = sql_client.score(inline)
    assert status_name(result) == "PASSED" and len(result.tests) == 1


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"database": "company", "gold_sql": "SELECT nope FROM employees"}, "sql.gold_sql"),
        ({"database": "nowhere", "gold_sql": GOLD_BY_DEPT}, "sql.database"),
        ({"database": "company"}, "sql"),
        ({"database": "company", "gold_sql": "DELETE FROM employees"}, "sql.gold_sql"),
        ({"database": "company", "gold_sql": GOLD_BY_DEPT, "engine": "oracle"}, "sql.engine"),
        ({"inline_sqlite": b"not a database", "gold_sql": GOLD_BY_DEPT}, "sql.inline_sqlite"),
        ({"database": "company", "expected_json": "[1, 2]"}, "sql.expected_json"),
    ],
)
def test_bad_sql_tasks_are_invalid_argument(sql_client, spec, field):
    task = pb.Task(id="bad", language=pb.SQL, code=GOLD_BY_DEPT, sql=pb.SqlSpec(**spec))
    with pytest.raises(grpc.RpcError) as info:
        sql_client.score(task)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith(f"task.{field}"), info.value.details()


def test_a_batch_mixing_python_and_sql(sql_client):
    python = pb.Task(
        id="py",
        language=pb.PYTHON,
        code="def f():\n    return 1\n",
        python=pb.PythonSpec(entry_point="f", call_tests=[pb.CallTest(expected_json="1")]),
    )
    results = {r.id: r for r in sql_client.score_batch([python, sql_task("sql", GOLD_BY_DEPT)])}
    assert {k: status_name(r) for k, r in results.items()} == {"py": "PASSED", "sql": "PASSED"}


def test_a_changed_database_file_is_a_critical_audit_entry(sql_server, sql_client, company, tmp_path):
    audit = sql_server.server.config.audit_log
    path = company / "variant2.sqlite"
    original = path.read_bytes()
    try:
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO depts VALUES ('legal', 1.0)")
        conn.close()
        list(sql_client.score_batch([sql_task("after-change", GOLD_BY_DEPT)]))
        entries = [json.loads(line) for line in open(audit, encoding="utf-8")]
        events = [e for e in entries if e["kind"] == "event"]  # attempts of earlier tests are in the log too
        assert any(e["code"] == "database_modified" and e["severity"] == "CRITICAL" for e in events), entries
    finally:
        path.write_bytes(original)


def test_order_by_with_limit(sql_client):
    gold = "SELECT name FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC, name LIMIT 2"
    assert status_name(sql_client.score(sql_task("limit-same", gold, gold))) == "PASSED"
    no_limit = sql_client.score(sql_task("limit-missing", gold.replace(" LIMIT 2", ""), gold))
    assert status_name(no_limit) == "FAILED" and 0.1 <= no_limit.score < 0.5
    wrong_end = sql_client.score(sql_task("limit-asc", gold.replace("DESC", "ASC"), gold))
    assert status_name(wrong_end) == "FAILED"


# ---------------------------------------------------------------- issue 11: comparison, order, JSON, stalls


def test_a_float_offset_cannot_pass_for_an_integer_count(sql_client):
    cheat = "SELECT dept, COUNT(*) + 0.003 FROM employees GROUP BY dept"
    result = score(sql_client, sql_task("count-offset", cheat, rel_tol=1e-2))
    assert (status_name(result), result.tests[0].passed) == ("FAILED", False), result.message
    assert result.score < 0.5
    honest = score(sql_client, sql_task("count-float", "SELECT dept, COUNT(*) * 1.0 FROM employees GROUP BY dept"))
    assert (status_name(honest), honest.score) == ("PASSED", 1.0), honest.message  # 2.0 is 2: value-exact


# Dee and Eve earn the same (the base and both variants): any order of the two is the answer.
BY_SALARY = "SELECT name FROM employees WHERE salary IS NOT NULL ORDER BY salary DESC"


@pytest.mark.parametrize(
    "gold",
    [
        BY_SALARY,  # the sort key is not an output column
        BY_SALARY.replace("SELECT name", "SELECT name, salary"),  # it is
        BY_SALARY + " LIMIT 4",  # the limit cuts the tie on the base and variant 2
    ],
)
def test_a_valid_tie_break_is_right_and_an_invalid_order_is_not(sql_client, gold):
    for tie_break in (", name", ", name DESC"):  # one of the two differs from the gold's own order
        query = gold.replace("salary DESC", f"salary DESC{tie_break}")
        result = score(sql_client, sql_task("tie-break", query, gold))
        assert (status_name(result), result.score) == ("PASSED", 1.0), (query, result.message)
    wrong = score(sql_client, sql_task("tie-wrong", gold.replace("DESC", "ASC"), gold))
    assert status_name(wrong) == "FAILED", wrong.message
    assert not wrong.tests[0].passed


@pytest.mark.parametrize(
    "completion",
    [
        "SELECT json_extract(o, '$.d'), json_extract(o, '$.n') FROM "
        "(SELECT json_object('d', dept, 'n', COUNT(*)) AS o FROM employees GROUP BY dept)",
        "SELECT o ->> '$.d', o ->> 'n' FROM (SELECT json_object('d', dept, 'n', COUNT(*)) AS o FROM employees "
        "GROUP BY dept) WHERE o -> '$.n' IS NOT NULL",
        "SELECT j.value, COUNT(*) FROM employees e, json_each(json_array(e.dept)) AS j GROUP BY j.value",
        "SELECT t.atom, COUNT(*) FROM employees e, json_tree(json_object('d', e.dept)) AS t "
        "WHERE t.type = 'text' GROUP BY t.atom",
        "SELECT dept, json_array_length(json_group_array(id)) FROM employees GROUP BY dept",
        "SELECT json_extract(value, '$.d'), json_extract(value, '$.n') FROM json_each(("
        "SELECT json_group_array(json_object('d', dept, 'n', n)) FROM (SELECT dept, COUNT(*) AS n FROM employees "
        "GROUP BY dept)))",
    ],
)
def test_read_only_json_queries_are_accepted_and_scored(sql_client, completion):
    result = score(sql_client, sql_task("json", completion))
    assert (status_name(result), result.score) == ("PASSED", 1.0), result.message


# Eight instr() calls over 1 MB strings: seconds each inside one SQLite VM step, where the
# progress handler never runs.
_HAYSTACK = "replace(hex(zeroblob(500000)), '0', 'a')"
_NEEDLE = "replace(hex(zeroblob(250000)), '0', 'a') || 'b'"
INSTR_STALL = (
    "SELECT "
    + " + ".join(f"instr(h{i}, n)" for i in range(8))
    + " FROM (SELECT "
    + ", ".join(f"{_HAYSTACK} || '{i}' AS h{i}" for i in range(8))
    + f", {_NEEDLE} AS n)"
)


def test_a_stalled_engine_step_is_a_timeout_and_other_tasks_are_unaffected(sql_server, sql_client):
    stats = sql_server.server.pool.stats
    lost, failures, recycled = stats.jobs_lost, stats.worker_failures, stats.workers_recycled
    stall = sql_task("stall", INSTR_STALL)
    stall.limits.CopyFrom(limits(test_ms=1000, task_ms=6000))
    honest = [sql_task(f"honest-{i}", GOLD_BY_DEPT) for i in range(6)]
    results = {r.id: r for r in sql_client.score_batch([stall, *honest])}
    stalled = results["stall"]
    assert (status_name(stalled), stalled.score) == ("TIMEOUT", 0.0), stalled.message
    assert "sandbox_worker_hung" not in finding_codes(stalled)  # the runner answered, not the pool
    assert stalled.timings.total_ms < 6000  # the per-query deadline held from outside the engine
    assert all(status_name(results[t.id]) == "PASSED" for t in honest), results
    assert stats.jobs_lost == lost
    after = [sql_task(f"after-{i}", GOLD_BY_DEPT) for i in range(4)]
    assert [status_name(r) for r in sql_client.score_batch(after)] == ["PASSED"] * 4
    # the stalled worker was replaced (the pool's recycle, not a loss): both are serving again
    pool = sql_server.server.pool
    assert wait_for(lambda: pool.live_workers == 2 and pool.stats.busy == 0, 30)
    assert stats.workers_recycled > recycled and stats.worker_failures == failures
