"""Automatic database variants: literal answers and coincidences on a database registered
without variants, end to end (real gRPC, real sandboxes, real SQLite files built here)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry
from tests.conftest import make_backend
from tests.helpers import finding_codes, status_name
from trainer_plugin.client import SandboxClient

STAFF_SCHEMA = """
CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, budget REAL);
CREATE TABLE employees (
    id INTEGER PRIMARY KEY,
    first_name TEXT NOT NULL,
    dept_id INTEGER NOT NULL REFERENCES departments(id),
    salary REAL CHECK (salary > 0),
    hired TEXT,
    manager_id INTEGER REFERENCES employees(id)
);
CREATE TABLE sales (id INTEGER PRIMARY KEY AUTOINCREMENT, employee_id INTEGER REFERENCES employees(id),
                    amount REAL NOT NULL, day TEXT NOT NULL);
CREATE TABLE tags (employee_id INTEGER, tag TEXT);
CREATE INDEX sales_by_day ON sales(day);
CREATE VIEW payroll AS SELECT dept_id, SUM(salary) AS total FROM employees GROUP BY dept_id;
CREATE TRIGGER no_negative_sales BEFORE INSERT ON sales WHEN NEW.amount < 0
    BEGIN SELECT RAISE(ABORT, 'negative'); END;
"""
NAMES = ["Andrew", "Beth", "Carlos", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena", "Moe", "Nia"]
EMPLOYEES = 40


def write_staff(path: Path, employees: int = EMPLOYEES, seed: int = 7) -> Path:
    """A small company: ids 1..N (so MAX(id) = COUNT(*)), Andrew earns the most."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(STAFF_SCHEMA)
        conn.executemany(
            "INSERT INTO departments VALUES (?, ?, ?)",
            [(1, "eng", 1e6), (2, "ops", 2.5e5), (3, "sales", 3e5), (4, "legal", None)],
        )
        rows = []
        for i in range(1, employees + 1):
            name = "Andrew" if i == 1 else NAMES[1 + i % (len(NAMES) - 1)]
            salary = 250_000.0 if i == 1 else float(rng.randrange(40_000, 200_000, 500))
            hired = f"20{rng.randint(10, 23)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}"
            rows.append((i, name, 1 + i % 3, salary, hired if i % 9 else None, None if i < 4 else 1 + i % 3))
        conn.executemany("INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO sales (employee_id, amount, day) VALUES (?, ?, ?)",
            [(1 + k % employees, round(rng.uniform(10, 900), 2), f"2024-0{1 + k % 9}-1{k % 10}") for k in range(90)],
        )
        conn.executemany(
            "INSERT INTO tags VALUES (?, ?)", [(1 + k % 12, ["new", "remote", "lead"][k % 3]) for k in range(30)]
        )
    conn.close()
    return path


COUNT = "SELECT COUNT(*) FROM employees"
TOP_EARNER = "SELECT first_name FROM employees ORDER BY salary DESC LIMIT 1"


@pytest.fixture(scope="module")
def staff(tmp_path_factory) -> Path:
    return write_staff(tmp_path_factory.mktemp("staff") / "staff.sqlite")


@pytest.fixture(scope="module")
def variants_client(backend_name: str, staff: Path, tmp_path_factory) -> Iterator[SandboxClient]:
    cache = tmp_path_factory.mktemp("variant-cache")
    registry = Registry.from_specs([f"staff={staff}"], cache_dir=cache)
    config = ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=None)
    embedded = EmbeddedServer(config, make_backend(backend_name), SqlContext(registry=registry)).start()
    client = SandboxClient(embedded.target, timeout=120)
    yield client
    client.close()
    embedded.stop()


def staff_task(task_id: str, completion: str, gold: str, **spec) -> pb.Task:
    return pb.Task(id=task_id, language=pb.SQL, code=completion, sql=pb.SqlSpec(database="staff", gold_sql=gold, **spec))


LITERALS = [
    ("count-literal", "SELECT 40", COUNT),
    ("values-literal", "VALUES ('Andrew')", TOP_EARNER),
    ("cte-literal", "WITH answer(n) AS (SELECT 40) SELECT n FROM answer", COUNT),
    ("json-literal", "SELECT value FROM json_each('[40]')", COUNT),
    ("recursive-literal", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) "
     "SELECT MAX(x) FROM c", COUNT),
]


@pytest.mark.parametrize(("task_id", "completion", "gold"), LITERALS, ids=[t[0] for t in LITERALS])
def test_a_literal_answer_with_no_table_is_rejected(variants_client, task_id, completion, gold):
    result = variants_client.score(staff_task(task_id, completion, gold))
    assert (status_name(result), result.score) == ("REJECTED", 0.0), result.message
    assert "no_table_reference" in finding_codes(result)


COINCIDENCES = [
    ("literal-through-from", "SELECT 'Andrew' FROM employees LIMIT 1", TOP_EARNER),
    ("max-id-for-count", "SELECT MAX(id) FROM employees", COUNT),
    ("count-of-other-table", "SELECT COUNT(*) + 36 FROM departments", COUNT),
]


@pytest.mark.parametrize(("task_id", "completion", "gold"), COINCIDENCES, ids=[t[0] for t in COINCIDENCES])
def test_a_coincidence_on_the_base_is_caught_by_an_automatic_variant(variants_client, task_id, completion, gold):
    result = variants_client.score(staff_task(task_id, completion, gold))
    assert status_name(result) != "PASSED" and result.score <= 0.5, result.message
    assert len(result.tests) > 1 and not all(t.passed for t in result.tests)


HONEST = [
    (COUNT, "SELECT COUNT(id) FROM employees"),
    (TOP_EARNER, "SELECT e.first_name FROM employees AS e WHERE e.salary = (SELECT MAX(salary) FROM employees)"),
    (
        "SELECT d.name, COUNT(*) FROM employees e JOIN departments d ON d.id = e.dept_id GROUP BY d.name",
        "SELECT (SELECT name FROM departments WHERE id = dept_id), COUNT(*) FROM employees GROUP BY dept_id",
    ),
    (
        "SELECT first_name, salary FROM employees ORDER BY salary DESC, id LIMIT 5",
        "SELECT first_name, salary FROM (SELECT * FROM employees ORDER BY salary DESC, id) LIMIT 5",
    ),
    (
        "SELECT dept_id, AVG(salary), MIN(hired) FROM employees GROUP BY dept_id HAVING COUNT(*) > 3",
        "SELECT dept_id, SUM(salary) / COUNT(salary), MIN(hired) FROM employees GROUP BY 1 HAVING COUNT(id) > 3",
    ),
    (
        "SELECT e.first_name, SUM(s.amount) FROM employees e JOIN sales s ON s.employee_id = e.id GROUP BY e.id",
        "SELECT (SELECT first_name FROM employees WHERE id = s.employee_id), SUM(amount) FROM sales s "
        "WHERE s.employee_id IN (SELECT id FROM employees) GROUP BY s.employee_id",
    ),
    (
        "SELECT tag, COUNT(*) FROM tags GROUP BY tag",
        "WITH t AS (SELECT tag FROM tags) SELECT tag, COUNT(*) FROM t GROUP BY tag",
    ),
    (
        "SELECT COUNT(*) FROM employees WHERE manager_id IS NULL",
        "SELECT COUNT(*) - COUNT(manager_id) FROM employees",
    ),
]


@pytest.mark.parametrize(("gold", "completion"), HONEST, ids=[f"honest-{i}" for i in range(len(HONEST))])
def test_honest_queries_score_one_on_the_automatic_variants(variants_client, gold, completion):
    for task_id, query in (("gold-itself", gold), ("rewritten", completion)):
        result = variants_client.score(staff_task(task_id, query, gold))
        assert (status_name(result), result.score) == ("PASSED", 1.0), (query, result.message)
        assert 2 <= len(result.tests) <= 5, "the base and at most 4 variants on which the gold changes"
        assert "no_table_reference" not in finding_codes(result)


def test_a_gold_no_variant_changes_is_flagged_and_literals_still_fail(variants_client):
    gold = "SELECT COUNT(*) > 0 FROM departments"
    honest = variants_client.score(staff_task("unchanging", "SELECT EXISTS (SELECT 1 FROM departments)", gold))
    assert (status_name(honest), honest.score) == ("PASSED", 1.0), honest.message
    assert len(honest.tests) == 1 and "no_distinguishing_variant" in finding_codes(honest)
    literal = variants_client.score(staff_task("unchanging-literal", "SELECT 1", gold))
    assert (status_name(literal), literal.score) == ("REJECTED", 0.0), literal.message


def test_base_only_tasks_still_reject_literals(variants_client):
    literal = variants_client.score(staff_task("base-only-literal", "SELECT 40", COUNT, base_only=True))
    assert status_name(literal) == "REJECTED" and literal.score == 0.0
    honest = variants_client.score(staff_task("base-only-honest", COUNT, COUNT, base_only=True))
    assert (status_name(honest), honest.score, len(honest.tests)) == ("PASSED", 1.0, 1)
