"""Sample SQLite databases (the tests' and the SQL benchmarks'): a base and two variants of one schema.

The data has NULLs, floats, duplicate rows and ties, and is arranged so that some
wrong queries return the right rows on the base database by coincidence but not on
the variants (test-suite accuracy).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE depts (name TEXT PRIMARY KEY, budget REAL);
CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT, dept TEXT REFERENCES depts(name),
                        salary REAL, manager_id INTEGER, hired TEXT);
CREATE TABLE sales (employee_id INTEGER, amount REAL, day TEXT);
"""

# On the base, every 'eng' employee earns more than 60000 and nobody else does: a query
# filtering on salary coincides with one filtering on the department. Not on the variants.
BASE = {
    "depts": [("eng", 1_000_000.0), ("ops", 250_000.5), ("sales", 300_000.25)],
    "employees": [
        (1, "Ada", "eng", 120_000.0, None, "2020-01-15"),
        (2, "Brook", "eng", 95_000.5, 1, "2021-03-01"),
        (3, "Cy", "ops", 55_000.0, 1, "2019-07-23"),
        (4, "Dee", "sales", 48_000.25, 3, "2022-11-30"),
        (5, "Eve", "sales", 48_000.25, 3, None),
        (6, "Finn", "ops", None, 3, "2023-02-02"),
    ],
    "sales": [
        (4, 100.5, "2024-01-01"),
        (4, 100.5, "2024-01-01"),
        (5, 250.0, "2024-01-02"),
        (2, 0.1, "2024-01-03"),
        (2, 0.2, "2024-01-03"),
    ],
}
VARIANT_1 = {
    **BASE,
    "employees": [*BASE["employees"], (7, "Gus", "ops", 70_000.0, 3, "2024-05-05")],
}
VARIANT_2 = {
    **BASE,
    "employees": [row if row[0] != 2 else (2, "Brook", "eng", 59_000.0, 1, "2021-03-01") for row in BASE["employees"]],
    "sales": [*BASE["sales"], (1, 999.99, "2024-02-01")],
}


def write_database(path: Path, data: dict[str, list[tuple]]) -> Path:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        for table, rows in data.items():
            if rows:
                marks = ",".join("?" * len(rows[0]))
                conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608 - our own table names
    conn.close()
    return path


def build_company(directory: Path) -> Path:
    """base.sqlite + variant1.sqlite + variant2.sqlite in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    write_database(directory / "base.sqlite", BASE)
    write_database(directory / "variant1.sqlite", VARIANT_1)
    write_database(directory / "variant2.sqlite", VARIANT_2)
    return directory


def inline_database(path: Path) -> bytes:
    write_database(path, BASE)
    return path.read_bytes()
