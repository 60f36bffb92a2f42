"""What automatic database variants cost: the builder per database, and SQL throughput.

    python bench/sql_variants.py                      # builder cost: small, medium, large
    python bench/sql_variants.py --sizes small,medium --count 8 --max-mb 128
    python bench/sql_variants.py --throughput 1000    # tasks/s, database registered alone

Builder: generates company-like SQLite databases (departments, employees with a foreign
key and a self-reference, sales with undeclared references, keyless tags) of growing
size, builds their automatic variants into a fresh cache and prints, per database, the
base's size, the build's time, how many variants fit and their bytes, then the time of a
second start that finds them in the cache. The large one is past the default byte cap,
so its tables are sampled.

Throughput: the test suite's company base file registered with no variants (so the
service builds automatic ones; a checkout without them scores on the base alone), and
`bench/sql_throughput.py`'s task mix through the full gRPC path. Run it from a checkout
of main and from this one in the same sitting to compare.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {"small": 1_000, "medium": 100_000, "large": 1_000_000}  # employees; sales = 2x, tags = 1x
NAMES = ["Andrew", "Beth", "Carlos", "Dana", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena"]


def generate(path: Path, employees: int) -> Path:
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        PRAGMA journal_mode = OFF;
        CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, budget REAL);
        CREATE TABLE employees (id INTEGER PRIMARY KEY, first_name TEXT NOT NULL,
            dept_id INTEGER NOT NULL REFERENCES departments(id), salary REAL, hired TEXT,
            manager_id INTEGER REFERENCES employees(id));
        CREATE TABLE sales (id INTEGER PRIMARY KEY, employee_id INTEGER, amount REAL, day TEXT);
        CREATE TABLE tags (employee_id INTEGER, tag TEXT);
        CREATE INDEX sales_by_employee ON sales(employee_id);
        """
    )
    conn.executemany("INSERT INTO departments VALUES (?, ?, ?)", [(d, f"dept{d}", d * 1e5) for d in range(1, 21)])
    conn.executemany(
        "INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)",
        (
            (
                i,
                rng.choice(NAMES),
                rng.randint(1, 20),
                float(rng.randrange(30_000, 250_000, 500)),
                f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}",
                rng.randint(1, i - 1) if i > 1 else None,
            )
            for i in range(1, employees + 1)
        ),
    )
    conn.executemany(
        "INSERT INTO sales (employee_id, amount, day) VALUES (?, ?, ?)",
        (
            (rng.randint(1, employees), round(rng.uniform(5, 900), 2), f"2024-{rng.randint(1, 12):02}-01")
            for _ in range(2 * employees)
        ),
    )
    conn.executemany(
        "INSERT INTO tags VALUES (?, ?)", ((rng.randint(1, employees), rng.choice("abcdef")) for _ in range(employees))
    )
    conn.commit()
    conn.close()
    return path


def bench_builder(sizes: list[str], count: int, max_mb: int, budget_s: float) -> None:
    from sandbox.sql.registry import _checksum
    from sandbox.sql.variants import VariantSettings, build_variants

    settings = VariantSettings(count=count, max_mb=max_mb, budget_s=budget_s)
    print(f"settings: count={count} max_mb={max_mb} budget_s={budget_s:g}; machine: {os.cpu_count()} CPUs")
    print(f"{'database':10}{'rows':>10}{'base MiB':>10}{'build s':>9}{'variants':>9}{'MiB':>8}{'cached s':>10}  note")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            base = generate(Path(tmp) / f"{size}.sqlite", SIZES[size])
            rows = SIZES[size] * 4 + 20
            checksum = _checksum(base)
            cache = Path(tmp) / f"cache-{size}"
            started = time.perf_counter()
            built = build_variants(size, base, "sqlite", checksum, settings, cache)
            seconds = time.perf_counter() - started
            started = time.perf_counter()
            again = build_variants(size, base, "sqlite", checksum, settings, cache)
            cached = time.perf_counter() - started
            assert again.cached and again.files == built.files
            total = sum(p.stat().st_size for p in built.files) / (1 << 20)
            print(
                f"{size:10}{rows:>10}{base.stat().st_size / (1 << 20):>10.1f}{seconds:>9.2f}"
                f"{len(built.files):>9}{total:>8.1f}{cached:>10.3f}  {built.note}"
            )


def bench_throughput(tasks: int, workers: int) -> None:
    from bench.sql_throughput import bench_service
    from sandbox.sql.samples import build_company

    with tempfile.TemporaryDirectory() as tmp:
        base = build_company(Path(tmp) / "company") / "base.sqlite"
        row = bench_service(base, tasks, workers)
    print(f"machine: {os.cpu_count()} CPUs; workers: {workers}; company base.sqlite registered alone")
    print(
        f"tasks {row['tasks']}  passed {row['passed']}  {row['tasks_per_s']:.1f} tasks/s  "
        f"p50 {row['p50_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small,medium,large", help=f"from {','.join(SIZES)}")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--max-mb", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=120.0)
    parser.add_argument("--throughput", type=int, default=0, metavar="TASKS", help="run the throughput bench instead")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    if args.throughput:
        bench_throughput(args.throughput, args.workers)
        return
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    bench_builder(sizes, args.count, args.max_mb, args.budget_s)


if __name__ == "__main__":
    main()
