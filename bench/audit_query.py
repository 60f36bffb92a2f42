"""The audit queries over a million v2 records: `summary`, `trend --by step`, `show ID` and an
`sql` COUNT ... GROUP BY, each against a 2 s target, next to a baseline in the same run
(json.loads line by line, as the old `sandbox.audit.query` scan did, counting by finding code).

The records are written straight to a file, not through the service: 20% carry findings
(and, as the default `--audit-code findings` stores, their code and task), the rest are
honest attempts as `--audit-results` writes them; several runs, callers, steps.

    python3 -m bench.audit_query [--rows 1000000] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import audit_query
from sandbox.audit_record import encode_blob, new_id

TARGET_S = 2.0
_CHEATS = [
    ("always_equal_object", "CRITICAL", "class A:\n    def __eq__(self, other):\n        return True"),
    ("early_exit", "WARNING", "sys.exit(0)"),
    ("sandbox_probe", "WARNING", "import ctypes"),
    ("fake_pass_report", "WARNING", 'print("all tests passed")'),
]


def write_log(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` attempt lines, a few distinct code/task blobs reused (compressing each is the
    writer's cost, not the reader's), split over the current file and one rotated file."""
    rng = random.Random(seed)
    blobs = [
        (encode_blob(f"def f(x):\n    {evidence}\n    return x + {i}\n"), encode_blob(json.dumps({"id": str(i)})))
        for i, (_, _, evidence) in enumerate(_CHEATS * 4)
    ]
    rotated = path.with_name(f"{path.stem}.20261201T181500Z{path.suffix}")
    runs = [f"grpo-{i}" for i in range(4)]
    callers = [f"trl:rank{i}" for i in range(8)]
    languages = ["python"] * 6 + ["sql"] * 3 + ["triton"]
    split = rows // 3
    handle = rotated.open("w", encoding="utf-8")
    for n in range(rows):
        if n == split:
            handle.close()
            handle = path.open("w", encoding="utf-8")
        cheat = rng.random() < 0.2
        findings: list[dict[str, str]] = []
        code_z = task = None
        if cheat:
            code, severity, evidence = rng.choice(_CHEATS)
            findings = [{"code": code, "severity": severity, "message": code.replace("_", " "), "evidence": evidence}]
            code_z, task = rng.choice(blobs)
        record: dict[str, Any] = {
            "v": 2,
            "kind": "attempt",
            "id": new_id(),
            "time": f"2026-12-01T{n // 3600000 % 24:02d}:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
            "run": rng.choice(runs),
            "step": n // 2000,
            "caller": rng.choice(callers),
            "principal": None,
            "task_id": str(rng.randrange(5000)),
            "language": rng.choice(languages),
            "status": "REJECTED" if cheat and findings[0]["severity"] == "CRITICAL" else "PASSED",
            "score": 0.0 if cheat else 1.0,
            "components": {"tests_passed": 0.0 if cheat else 1.0, "compiles": 1.0},
            "findings": findings,
            "max_severity": findings[0]["severity"] if findings else None,
            "code_sha256": "0" * 64,
            "code_bytes": 120,
            "code_z": code_z,
            "code_truncated": False,
            "task": task,
        }
        handle.write(json.dumps(record) + "\n")
    handle.close()


def timed(name: str, work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    verdict = "ok" if elapsed < TARGET_S else "OVER"
    print(f"  {name:<34} {elapsed:7.3f} s   (target {TARGET_S:.0f} s: {verdict})")
    return elapsed


def baseline(path: Path) -> Counter[str]:
    """What the old reader did: every line through json.loads, counted in Python."""
    counts: Counter[str] = Counter()
    for file in audit_query.log_files(path):
        with file.open(encoding="utf-8") as handle:
            for line in handle:
                entry = json.loads(line)
                for finding in entry["findings"]:
                    counts[finding["code"]] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None, help="where the log is written (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="leave the log behind")
    args = parser.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="rft-audit-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "rft-sandbox-audit.jsonl"
    started = time.perf_counter()
    write_log(path, args.rows)
    size = sum(p.stat().st_size for p in audit_query.log_files(path))
    print(f"wrote {args.rows:,} records ({size / 1e6:.0f} MB, 2 files) in {time.perf_counter() - started:.1f} s")
    with audit_query.AuditStore(path) as store:
        some_id = store.rows("SELECT id FROM attempts WHERE len(findings) > 0 LIMIT 1 OFFSET 1000")[0]["id"]

    def fresh(work: Callable[[audit_query.AuditStore], object]) -> Callable[[], object]:
        """Each command as the CLI runs it: a new store (connection, views, scan) every time."""

        def run() -> object:
            with audit_query.AuditStore(path) as store:
                return work(store)

        return run

    results = {
        "summary": timed("summary", fresh(audit_query.summary)),
        "trend --by step": timed("trend --by step", fresh(audit_query.trend)),
        "show ID": timed(f"show {some_id}", fresh(lambda store: audit_query.attempt(store, some_id))),
        "sql COUNT GROUP BY": timed(
            "sql COUNT(*) GROUP BY code",
            fresh(lambda store: store.user_query("SELECT code, count(*) FROM findings GROUP BY code")),
        ),
    }
    base = timed("baseline: json.loads scan, by code", lambda: baseline(path))
    for name, elapsed in results.items():
        print(f"  {name:<34} {base / elapsed:6.1f}x the baseline")
    if not args.keep:
        for file in audit_query.log_files(path):
            file.unlink()
        if not args.dir:
            directory.rmdir()


if __name__ == "__main__":
    main()
