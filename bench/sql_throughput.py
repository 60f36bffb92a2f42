"""SQL tasks per second through the full gRPC path on SQLite, next to a naive baseline.

    python bench/sql_throughput.py [--tasks 1000] [--workers 2]

Builds the test suite's company database (a base and two variants), starts a real
server subprocess with it registered, and scores `--tasks` SQL tasks (a mix of correct,
partially right and wrong text-to-SQL answers, each checked on all three files) in
ScoreBatch calls of 256. Baseline, same run: a fresh `python3` subprocess per query
that opens the file with sqlite3 and fetches the rows (the comparison itself not even
counted), `--workers` at a time, on the base file only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.humaneval_throughput import _percentile, run_baseline, served  # noqa: E402
from sandbox.api import pb  # noqa: E402
from sandbox.sql.samples import build_company  # noqa: E402

GOLD = "SELECT dept, COUNT(*) AS n, AVG(salary) FROM employees GROUP BY dept"
ANSWERS = [
    GOLD,
    "SELECT COUNT(*), dept, SUM(salary) / COUNT(salary) FROM employees GROUP BY dept",
    "SELECT dept, COUNT(*), AVG(salary) FROM employees WHERE dept <> 'ops' GROUP BY dept",
    "SELECT name, salary FROM employees",
    "SELECT e.dept, COUNT(*), AVG(e.salary) FROM employees e JOIN depts d ON d.name = e.dept GROUP BY e.dept",
]


def bench_service(database: Path, count: int, workers: int) -> dict[str, float]:
    options = ("--workers", str(workers), "--backend", "bwrap", "--database", f"company={database}")
    with served(*options) as (_, client):
        tasks = [
            pb.Task(
                id=str(i),
                language=pb.SQL,
                code=ANSWERS[i % len(ANSWERS)],
                sql=pb.SqlSpec(database="company", gold_sql=GOLD),
            )
            for i in range(count)
        ]
        list(client.score_batch(tasks[:20]))  # warm-up: workers, reference results
        started = time.monotonic()
        results = [r for i in range(0, count, 256) for r in client.score_batch(tasks[i : i + 256])]
        elapsed = time.monotonic() - started
    runs = [r.timings.run_ms for r in results]
    return {
        "tasks": len(results),
        "passed": sum(r.status == pb.PASSED for r in results),
        "seconds": elapsed,
        "tasks_per_s": len(results) / elapsed,
        "p50_ms": _percentile(runs, 0.5),
        "p99_ms": _percentile(runs, 0.99),
    }


_NAIVE = "import sqlite3, sys; rows = sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()"


def bench_naive(database: Path, count: int, workers: int) -> dict[str, float]:
    def run(index: int) -> tuple[bool, float]:
        t0 = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _NAIVE, str(database / "base.sqlite"), ANSWERS[index % len(ANSWERS)]],
            capture_output=True,
            timeout=60,
        )
        return done.returncode == 0, (time.perf_counter() - t0) * 1000

    return run_baseline(list(range(count)), workers, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--naive", type=int, default=200, help="queries for the (slow) baseline")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = build_company(Path(tmp) / "company")
        rows = {
            "rft-sandbox, SQLite, 3 files per task": bench_service(database, args.tasks, args.workers),
            "baseline: python3 + sqlite3 subprocess per query": bench_naive(database, args.naive, args.workers),
        }
    print(f"machine: {os.cpu_count()} CPUs; workers/concurrency: {args.workers}")
    print(f"{'':50}{'tasks':>7}{'tasks/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in rows.items():
        print(f"{name:50}{row['tasks']:>7}{row['tasks_per_s']:>10.1f}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}")
    service = rows["rft-sandbox, SQLite, 3 files per task"]["tasks_per_s"]
    naive = rows["baseline: python3 + sqlite3 subprocess per query"]["tasks_per_s"]
    print(f"\nthroughput: {service:.0f} SQL tasks/s (target >= 500); {service / naive:.1f}x the baseline")
    print("(service p50/p99: time inside the sandbox per task, all three files)")


if __name__ == "__main__":
    main()
