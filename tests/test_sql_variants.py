"""Automatic database variants: literal answers and coincidences on a database registered
without variants, end to end (real gRPC, real sandboxes, real SQLite files built here)."""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rewards.model import Severity, Status
from rewards.sql import Execution, ResultSet, SqlWeights, score_sql
from sandbox.api import pb
from sandbox.config import ServiceConfig
from sandbox.embedded import EmbeddedServer
from sandbox.languages import standard_languages
from sandbox.sql import variants as variants_module
from sandbox.sql.gate import check_query
from sandbox.sql.plan import SqlContext
from sandbox.sql.registry import Registry, RegistryError
from sandbox.sql.variants import VariantSettings, build_variants
from tests.conftest import make_backend
from tests.helpers import finding_codes, status_name
from trainer_plugin.client import ClientOptions, SandboxClient

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
            [(1 + k % employees, round(rng.uniform(10, 900), 2), f"2024-0{1 + k % 9}-1{k % 10}") for k in range(100)],
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
    embedded = EmbeddedServer(
        config, make_backend(backend_name), standard_languages(sql=SqlContext(registry=registry))
    ).start()
    client = SandboxClient(ClientOptions(embedded.target, timeout=120))
    yield client
    client.close()
    embedded.stop()


def staff_task(task_id: str, completion: str, gold: str, **spec) -> pb.Task:
    return pb.Task(
        id=task_id, language=pb.SQL, code=completion, sql=pb.SqlSpec(database="staff", gold_sql=gold, **spec)
    )


LITERALS = [
    ("count-literal", "SELECT 40", COUNT),
    ("values-literal", "VALUES ('Andrew')", TOP_EARNER),
    ("cte-literal", "WITH answer(n) AS (SELECT 40) SELECT n FROM answer", COUNT),
    ("json-literal", "SELECT value FROM json_each('[40]')", COUNT),
    (
        "recursive-literal",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 40) SELECT MAX(x) FROM c",
        COUNT,
    ),
]


@pytest.mark.parametrize(("task_id", "completion", "gold"), LITERALS, ids=[t[0] for t in LITERALS])
def test_a_literal_answer_with_no_table_is_rejected(variants_client, task_id, completion, gold):
    result = variants_client.score(staff_task(task_id, completion, gold))
    if task_id == "json-literal" and status_name(result) == "RUNTIME_ERROR":
        assert result.score == 0.0  # an authorizer that refuses json_each: no result, its own status, 0
        return
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
    (TOP_EARNER, "SELECT e.first_name FROM employees AS e WHERE e.salary IS NOT NULL ORDER BY e.salary DESC LIMIT 1"),
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


# ---------------------------------------------------------------- gold failing on a variant only

PAIRS = "SELECT a.id, b.id FROM sales a, sales b"  # 100 sales: 10000 rows, the cap; more pass it


def test_a_gold_that_overflows_on_a_variant_only_leaves_that_variant_out(variants_client, staff, tmp_path):
    same = build_variants("staff", staff, "sqlite", _sha(staff), VariantSettings(), tmp_path)  # reproducible
    sales = [sqlite3.connect(p).execute("SELECT COUNT(*) FROM sales").fetchone()[0] for p in same.files]
    assert max(sales) > 100, sales
    result = variants_client.score(staff_task("pairs", PAIRS, PAIRS))
    assert (status_name(result), result.score) == ("PASSED", 1.0), result.message
    assert len(result.tests) > 1


# ---------------------------------------------------------------- the no-table rule, pure


def _rows(*values: int) -> ResultSet:
    return ResultSet(("n",), tuple((v,) for v in values))


def _score(candidate: list[ResultSet], gold: list[ResultSet], literal: bool):
    return score_sql(
        [Execution(r) for r in candidate],
        gold,
        order_matters=False,
        rel_tol=1e-6,
        abs_tol=1e-9,
        weights=SqlWeights(),
        findings=[],
        reads_no_table=literal,
    )


def test_a_literal_is_rejected_unless_a_database_with_another_answer_proves_it():
    base, variant = _rows(40), _rows(36)
    right_on_base_only = _score([base, base], [base, variant], literal=True)
    assert (right_on_base_only.status, right_on_base_only.score) == (Status.REJECTED, 0.0)
    assert {f.code: f.severity for f in right_on_base_only.findings}["no_table_reference"] is Severity.CRITICAL
    nothing_tells = _score([base, base], [base, base], literal=True)  # every gold answer is the base's
    assert nothing_tells.status is Status.REJECTED
    assert _score([base], [base], literal=True).status is Status.REJECTED
    wrong = _score([_rows(1)], [base], literal=True)
    assert (wrong.status, wrong.score) == (Status.REJECTED, 0.0)
    timeout = score_sql(
        [Execution(None, "", "timeout")],
        [base],
        order_matters=False,
        rel_tol=1e-6,
        abs_tol=1e-9,
        weights=SqlWeights(),
        findings=[],
        reads_no_table=True,
    )
    assert (timeout.status, timeout.score) == (Status.TIMEOUT, 0.0)  # no result: its own status stands
    proved = _score([base, variant], [base, variant], literal=True)  # e.g. a function of something that varies
    assert (proved.status, proved.score) == (Status.PASSED, 1.0)
    assert _score([base, base], [base, variant], literal=False).score == 0.5  # the rule is only for literals


@pytest.mark.parametrize(
    ("sql", "dialect", "reads"),
    [
        ("SELECT 275", "sqlite", False),
        ("VALUES ('Andrew')", "sqlite", False),
        ("SELECT 1 UNION ALL SELECT 2", "sqlite", False),
        ("WITH t(n) AS (SELECT 40) SELECT n FROM t", "sqlite", False),
        ("WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT * FROM b", "sqlite", False),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 9) SELECT MAX(x) FROM c",
            "sqlite",
            False,
        ),
        ("SELECT value FROM json_each('[40]')", "sqlite", False),
        ("SELECT * FROM generate_series(1, 3)", "duckdb", False),
        ("SELECT * FROM (VALUES (1, 'a')) AS v(x, y)", "postgres", False),
        ("SELECT name FROM sqlite_master", "sqlite", False),
        ("SELECT table_name FROM information_schema.tables", "postgres", False),
        ("SELECT COUNT(*) FROM employees", "sqlite", True),
        ("SELECT 'Andrew' FROM employees LIMIT 1", "sqlite", True),
        ("SELECT 40 WHERE EXISTS (SELECT 1 FROM employees)", "sqlite", True),
        ("WITH t AS (SELECT * FROM employees) SELECT COUNT(*) FROM t", "sqlite", True),
        ("SELECT value FROM json_each((SELECT json_group_array(id) FROM employees))", "sqlite", True),
        ("SELECT * FROM main.employees", "sqlite", True),
        ("SELECT e.id FROM employees e JOIN depts d ON d.name = e.dept", "postgres", True),
    ],
)
def test_reading_a_table_is_decided_on_the_syntax_tree(sql, dialect, reads):
    gate = check_query(sql, dialect)
    assert gate.ok, gate
    assert gate.reads_tables is reads


# ---------------------------------------------------------------- the builder


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build(base: Path, cache: Path, **settings):
    return build_variants("db", base, "sqlite", _sha(base), VariantSettings(**settings), cache)


def _dump(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_variants_are_reproducible_by_seed(staff, tmp_path):
    first = _build(staff, tmp_path / "one", count=3)
    again = _build(staff, tmp_path / "two", count=3)
    other = _build(staff, tmp_path / "three", count=3, seed=1)
    assert not first.note and len(first.files) == 3 and not first.cached and not again.cached
    assert [_dump(p) for p in first.files] == [_dump(p) for p in again.files]
    assert [_dump(p) for p in first.files] != [_dump(p) for p in other.files]
    assert len({tuple(_dump(p)) for p in first.files}) == 3  # the variants differ from each other
    assert all(_dump(p) != _dump(staff) for p in first.files)  # and from the base


def test_the_cache_is_reused_and_a_changed_file_is_rebuilt(staff, tmp_path, caplog):
    built = _build(staff, tmp_path, count=2)
    cached = _build(staff, tmp_path, count=2)
    assert cached.cached and cached.files == built.files and cached.checksums == built.checksums
    assert [_sha(p) for p in cached.files] == list(cached.checksums)
    with sqlite3.connect(built.files[0]) as conn:
        conn.execute("DELETE FROM tags")
    conn.close()
    with caplog.at_level(logging.WARNING, logger="sandbox.sql.variants"):
        rebuilt = _build(staff, tmp_path, count=2)
    assert not rebuilt.cached and [_sha(p) for p in rebuilt.files] == list(built.checksums)
    assert "sql_variants_cache_changed" in caplog.messages
    other = _build(staff, tmp_path, count=2, seed=5)  # other settings: another entry
    assert not other.cached and other.files[0].parent != built.files[0].parent


def test_concurrent_first_builds_build_once(staff, tmp_path):
    results = []

    def build() -> None:
        results.append(_build(staff, tmp_path, count=4))

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    assert sorted(r.cached for r in results) == [False, True, True, True]
    assert len({r.checksums for r in results}) == 1


def _big(path: Path, rows: int) -> Path:
    rng = random.Random(3)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, label TEXT UNIQUE);"
            "CREATE TABLE items (id INTEGER PRIMARY KEY, kind INTEGER REFERENCES kinds(id), payload TEXT, price REAL);"
        )
        conn.executemany("INSERT INTO kinds VALUES (?, ?)", [(k, f"kind{k}") for k in range(1, 11)])
        conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?)",
            [(i, 1 + i % 10, "x" * rng.randint(50, 150), rng.uniform(1, 100)) for i in range(1, rows + 1)],
        )
    conn.close()
    return path


def test_the_byte_cap_samples_large_tables(tmp_path):
    base = _big(tmp_path / "big.sqlite", 40_000)
    assert base.stat().st_size > 4 << 20
    built = _build(base, tmp_path / "cache", count=4, max_mb=2)
    assert len(built.files) >= 1
    assert sum(p.stat().st_size for p in built.files) <= 2 << 20
    for path in built.files:
        conn = sqlite3.connect(path)
        items, kinds = conn.execute("SELECT COUNT(*), COUNT(DISTINCT kind) FROM items").fetchone()
        assert 50 <= items < 40_000 / 4 and kinds > 1
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT COUNT(*) FROM kinds").fetchone()[0] > 1  # a small table is not sampled away
        conn.close()


CONSTRAINED = """
CREATE TABLE owners (code TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, since TEXT NOT NULL);
CREATE TABLE pets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL REFERENCES owners(code),
    name TEXT NOT NULL,
    legs INTEGER NOT NULL CHECK (legs BETWEEN 0 AND 8),
    weight REAL CHECK (weight > 0),
    heavy INTEGER GENERATED ALWAYS AS (weight > 20) VIRTUAL,
    UNIQUE (owner, name)
);
CREATE TABLE visits (pet INTEGER NOT NULL, day TEXT NOT NULL, cost REAL, PRIMARY KEY (pet, day),
                     FOREIGN KEY (pet) REFERENCES pets(id)) WITHOUT ROWID;
CREATE TABLE notes (pet_id INTEGER, body TEXT);
CREATE UNIQUE INDEX one_lower_email ON owners(lower(email));
CREATE VIEW heavy_pets AS SELECT name FROM pets WHERE heavy;
CREATE TRIGGER count_visits AFTER INSERT ON visits BEGIN UPDATE pets SET legs = legs WHERE id = NEW.pet; END;
"""


def _constrained(path: Path) -> Path:
    rng = random.Random(11)
    with sqlite3.connect(path) as conn:
        conn.executescript(CONSTRAINED)
        owners = [(f"o{k}", f"o{k}@example.org", f"2020-01-{k + 1:02}") for k in range(8)]
        conn.executemany("INSERT INTO owners VALUES (?, ?, ?)", owners)
        for k in range(1, 31):
            conn.execute(
                "INSERT INTO pets (owner, name, legs, weight) VALUES (?, ?, ?, ?)",
                (f"o{k % 8}", f"pet{k}", rng.choice([0, 2, 4]), round(rng.uniform(1, 40), 1)),
            )
        conn.executemany(
            "INSERT INTO visits VALUES (?, ?, ?)",
            [(1 + k % 30, f"2024-02-{1 + k // 30:02}", 20.0 + k) for k in range(60)],
        )
        conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1 + k % 30, f"note {k % 5}") for k in range(40)])
    conn.close()
    return path


def test_constraints_hold_on_every_variant(tmp_path):
    base = _constrained(tmp_path / "pets.sqlite")
    built = _build(base, tmp_path / "cache", count=6)
    assert len(built.files) == 6 and not built.note
    schema = sqlite3.connect(base).execute("SELECT type, name FROM sqlite_schema ORDER BY name").fetchall()
    grew, exact_copies = False, False
    for path in built.files:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT type, name FROM sqlite_schema ORDER BY name").fetchall() == schema
        assert conn.execute("SELECT COUNT(*) FROM pets WHERE legs NOT BETWEEN 0 AND 8 OR weight <= 0").fetchone() == (
            0,
        )
        assert conn.execute("SELECT COUNT(*) FROM pets WHERE heavy IS NOT (weight > 20)").fetchone() == (0,)
        ids = [r[0] for r in conn.execute("SELECT id FROM pets ORDER BY id")]
        grew |= max(ids) > 30  # duplicates got fresh keys past the base's
        notes = conn.execute("SELECT COUNT(*), COUNT(DISTINCT pet_id || body) FROM notes").fetchone()
        exact_copies |= notes[0] > notes[1]
        assert all(d is None or len(d) == 10 for (d,) in conn.execute("SELECT since FROM owners")), (
            "dates keep their format"
        )
        conn.close()
    assert grew and exact_copies


def test_a_build_past_its_budget_falls_back_with_a_log(staff, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="sandbox.sql.variants"):
        built = _build(staff, tmp_path, budget_s=0)
    assert built.files == () and "budget_s=0" in built.note
    record = next(r for r in caplog.records if r.getMessage() == "sql_variants_built")
    assert record.levelno == logging.WARNING and "budget_s=0" in record.fields["note"]
    registry = Registry.from_specs([f"solo={staff}?budget_s=0"], cache_dir=tmp_path / "registry")
    assert registry.databases["solo"].files == (staff,) and registry.databases["solo"].auto == 0
    assert _build(staff, tmp_path, count=8).files, "a later, larger budget builds them"


def test_a_failing_build_never_stops_registration(staff, tmp_path, caplog, monkeypatch):
    def broken(*args, **kwargs):
        raise sqlite3.DatabaseError("file is not a database")

    monkeypatch.setattr(variants_module._Sqlite, "read", staticmethod(broken))
    with caplog.at_level(logging.WARNING, logger="sandbox.sql.variants"):
        registry = Registry.from_specs([f"solo={staff}"], cache_dir=tmp_path)
    assert registry.databases["solo"].files == (staff,)
    record = next(r for r in caplog.records if r.getMessage() == "sql_variants_unavailable")
    assert "file is not a database" in record.fields["reason"]
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # no staging left behind


def test_a_virtual_table_is_unsupported_and_that_is_cached(tmp_path):
    base = tmp_path / "fts.sqlite"
    with sqlite3.connect(base) as conn:
        conn.executescript("CREATE TABLE t (x TEXT); CREATE VIRTUAL TABLE f USING fts5(x); INSERT INTO t VALUES ('a');")
    conn.close()
    first = _build(base, tmp_path / "cache")
    assert first.files == () and "virtual table 'f'" in first.note
    assert _build(base, tmp_path / "cache").cached


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("?count=0", "count=0 must be between 1 and 64"),
        ("?count=many", "count='many' is not an integer"),
        ("?variants=maybe", "variants='maybe': use variants=auto or variants=none"),
        ("?colour=red", "unknown option 'colour'"),
        ("?count=2&keep=3", "keep=3 exceeds count=2"),
        ("?count", "option 'count': expected KEY=VALUE"),
        ("?seed=1&seed=2", "option 'seed' given twice"),
        ("?budget_s=-1", "budget_s=-1 must be between 0 and 86400"),
        ("?budget_s=nan", "budget_s=nan must be between"),
    ],
)
def test_registration_options_are_validated(staff, tmp_path, suffix, message):
    with pytest.raises(RegistryError) as info:
        Registry.from_specs([f"solo={staff}{suffix}"], cache_dir=tmp_path)
    assert message in str(info.value) and "database 'solo'" in str(info.value)


def test_registered_variants_and_postgres_refuse_automatic_ones(tmp_path):
    from sandbox.sql.samples import build_company

    company = build_company(tmp_path / "company")
    with pytest.raises(RegistryError, match="has 2 registered variant"):
        Registry.from_specs([f"company={company}?variants=auto"], cache_dir=tmp_path)
    assert len(Registry.from_specs([f"company={company}?variants=none"]).databases["company"].files) == 3
    with pytest.raises(RegistryError, match="PostgreSQL databases get no automatic variants"):
        Registry.from_specs(["pg=postgresql://nobody@127.0.0.1:9/db?variants=auto"])


def test_settings_shape_the_registration(staff, tmp_path):
    registry = Registry.from_specs(
        [f"none={staff}?variants=none", f"few={staff}?count=3&keep=2&seed=9"], cache_dir=tmp_path
    )
    assert registry.databases["none"].files == (staff,)
    few = registry.databases["few"]
    assert (len(few.files), few.auto, few.keep) == (4, 3, 2)
    assert [p.name for p in few.files[1:]] == ["staff.auto01.sqlite", "staff.auto02.sqlite", "staff.auto03.sqlite"]
    assert few.changed_files() == []
    assert len(registry.mounts()) == 5


def test_the_cli_passes_the_cache_directory(staff, tmp_path):
    from sandbox.cli import _languages, build_parser

    args = build_parser().parse_args(["serve", "--database", f"s={staff}", "--variants-cache", str(tmp_path / "c")])
    (context,) = [language.context for language in _languages(args) if language.name == "sql"]
    assert context.registry.cache_dir == tmp_path / "c" and context.registry.databases["s"].auto == 8
    with pytest.raises(SystemExit, match="--database: database 's': unknown option 'x'"):
        _languages(build_parser().parse_args(["serve", "--database", f"s={staff}?x=1"]))


# ---------------------------------------------------------------- DuckDB


@pytest.fixture(scope="module")
def duck_staff(staff: Path, tmp_path_factory) -> Path:
    """The staff database as a DuckDB file (same rows; DuckDB checks the foreign keys)."""
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path_factory.mktemp("duck-staff") / "staff.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE departments (id INTEGER PRIMARY KEY, name VARCHAR NOT NULL UNIQUE, budget DOUBLE)")
    conn.execute(
        "CREATE TABLE employees (id INTEGER PRIMARY KEY, first_name VARCHAR NOT NULL, "
        "dept_id INTEGER NOT NULL REFERENCES departments(id), salary DOUBLE CHECK (salary > 0), hired DATE, "
        "manager_id INTEGER)"
    )
    source = sqlite3.connect(staff)
    for table in ("departments", "employees"):
        rows = source.execute(f"SELECT * FROM {table}").fetchall()
        conn.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    source.close()
    conn.execute("CHECKPOINT")
    conn.close()
    return path


@pytest.fixture(scope="module")
def duck_client(backend_name: str, duck_staff: Path, tmp_path_factory) -> Iterator[SandboxClient]:
    registry = Registry.from_specs([f"staff={duck_staff}?count=6"], cache_dir=tmp_path_factory.mktemp("duck-cache"))
    assert registry.databases["staff"].auto == 6
    config = ServiceConfig(host="127.0.0.1", port=0, workers=2, audit_log=None)
    embedded = EmbeddedServer(
        config, make_backend(backend_name), standard_languages(sql=SqlContext(registry=registry))
    ).start()
    client = SandboxClient(ClientOptions(embedded.target, timeout=120))
    yield client
    client.close()
    embedded.stop()


def test_duckdb_databases_get_automatic_variants_too(duck_client):
    def duck(task_id: str, completion: str, gold: str) -> pb.Result:
        return duck_client.score(
            pb.Task(
                id=task_id,
                language=pb.SQL,
                code=completion,
                sql=pb.SqlSpec(database="staff", gold_sql=gold, engine="duckdb"),
            )
        )

    literal = duck("duck-literal", "SELECT 40", COUNT)
    assert (status_name(literal), literal.score) == ("REJECTED", 0.0), literal.message
    coincidence = duck("duck-max-id", "SELECT MAX(id) FROM employees", COUNT)
    assert status_name(coincidence) != "PASSED" and coincidence.score <= 0.5, coincidence.message
    gold = "SELECT d.name, COUNT(*), MIN(e.hired) FROM employees e JOIN departments d ON d.id = e.dept_id GROUP BY 1"
    honest = duck(
        "duck-honest",
        "SELECT (SELECT name FROM departments WHERE id = dept_id), COUNT(id), MIN(hired) "
        "FROM employees GROUP BY dept_id",
        gold,
    )
    assert (status_name(honest), honest.score) == ("PASSED", 1.0), honest.message
    assert len(honest.tests) > 1


def test_empty_and_one_row_tables_and_odd_values_build(tmp_path):
    base = tmp_path / "odd.sqlite"
    with sqlite3.connect(base) as conn:
        conn.executescript(
            "CREATE TABLE empty (id INTEGER PRIMARY KEY, x TEXT);"
            "CREATE TABLE one (k TEXT PRIMARY KEY, v REAL) WITHOUT ROWID;"
            "CREATE TABLE mixed (a, b BLOB, c INTEGER);"
            "CREATE TABLE huge (id INTEGER PRIMARY KEY, n INTEGER);"
            "INSERT INTO huge VALUES (9223372036854775807, 1), (1, 2);"
            "INSERT INTO one VALUES ('only', 1.5);"
        )
        conn.executemany(
            "INSERT INTO mixed VALUES (?, ?, ?)",
            [(1, b"\x00\x01", 2**63 - 1), ("text", None, -(2**63)), (2.5, b"", 0), (None, b"x", 7)],
        )
    conn.close()
    built = _build(base, tmp_path / "cache", count=4)
    assert len(built.files) == 4 and not built.note
    for path in built.files:
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT COUNT(*) FROM empty").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) >= 1 FROM one").fetchone() == (1,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        conn.close()


def test_a_cancelled_build_leaves_nothing_half_made(staff, tmp_path, monkeypatch):
    from sandbox.sql.perturb import Perturber

    real = Perturber.variant

    def interrupted(self, seed, index, check):
        if index == 2:
            raise KeyboardInterrupt  # the service is being stopped while it builds
        return real(self, seed, index, check)

    monkeypatch.setattr(Perturber, "variant", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _build(staff, tmp_path, count=3)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.setattr(Perturber, "variant", real)
    rebuilt = _build(staff, tmp_path, count=3)
    assert len(rebuilt.files) == 3 and not rebuilt.cached


def test_waiting_for_another_build_is_bounded_by_the_budget(staff, tmp_path, caplog):
    import fcntl

    first = _build(staff, tmp_path, count=2)
    lock = first.files[0].parent.with_name(first.files[0].parent.name + ".lock")
    with open(lock, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process is building this entry
        with caplog.at_level(logging.WARNING, logger="sandbox.sql.variants"):
            waited = _build(staff, tmp_path, count=2, budget_s=0.3)
    assert waited.files == () and "another build" in waited.note
    record = next(r for r in caplog.records if r.getMessage() == "sql_variants_unavailable")
    assert "lock" in record.fields["reason"]
