"""Docker backend vs bubblewrap backend vs naive Docker baselines, on HumanEval.

    eval "$(bash scripts/docker-up)"; python bench/docker_throughput.py [--repeat 2] [--naive 48]

In one sitting:
  1. the service with --backend docker and with --backend bwrap (same client, same tasks:
     the 164 canonical solutions `--repeat` times, ScoreBatch of 128, two in flight);
  2. baseline "docker run": `docker run --rm -i --network none` per task, program on stdin;
  3. baseline "docker exec": `docker exec -i` per task into one warm container;
     (both over the first `--naive` problems, `--workers` at a time, since they are slow);
  4. container start-to-ready time and memory of a warm container.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.humaneval_throughput import bench_service, humaneval_tasks, program, run_baseline  # noqa: E402
from sandbox.backends.docker import DockerBackend  # noqa: E402
from sandbox.backends.policy import policy_for  # noqa: E402
from sandbox.config import ServiceConfig  # noqa: E402
from sandbox.python.humaneval import load_problems  # noqa: E402
from sandbox.worker import Worker  # noqa: E402

IMAGE = "rft-sandbox:latest"


def _naive(problems: list[dict], workers: int, command: list[str]) -> dict[str, float]:
    def run(problem: dict) -> tuple[bool, float]:
        t0 = time.perf_counter()
        done = subprocess.run(command, input=program(problem).encode(), capture_output=True, timeout=120)
        return done.returncode == 0, (time.perf_counter() - t0) * 1000

    return run_baseline(problems, workers, run)


def bench_docker_run(problems: list[dict], workers: int) -> dict[str, float]:
    return _naive(
        problems, workers, ["docker", "run", "--rm", "-i", "--network", "none", "--entrypoint", "python3", IMAGE, "-"]
    )


def bench_docker_exec(problems: list[dict], workers: int) -> dict[str, float]:
    name = f"rft-bench-exec-{os.getpid()}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network", "none", "--entrypoint", "sleep", IMAGE, "3600"],
        check=True,
        capture_output=True,
    )
    try:
        return _naive(problems, workers, ["docker", "exec", "-i", name, "python3", "-"])
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


async def _start_times(count: int) -> tuple[list[float], list[float]]:
    backend, policy = DockerBackend(instance=f"bench-{os.getpid()}"), policy_for(ServiceConfig())
    ready, memory = [], []
    for slot in range(count):
        worker = Worker(backend, slot, policy)
        t0 = time.perf_counter()
        await worker.start()
        ready.append((time.perf_counter() - t0) * 1000)
        container = worker._sandbox.container  # type: ignore[union-attr]
        stats = await asyncio.to_thread(container.stats, stream=False)
        memory.append(stats["memory_stats"].get("usage", 0) / (1 << 20))
        await worker.stop()
    backend.remove_leftovers()
    return ready, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--naive", type=int, default=48, help="problems for the naive Docker baselines")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    problems = load_problems()
    tasks = humaneval_tasks(problems, args.repeat)
    rows = {
        "rft-sandbox, docker backend": bench_service(tasks, args.workers, args.batch, backend="docker"),
        "rft-sandbox, bwrap backend": bench_service(tasks, args.workers, args.batch, backend="bwrap"),
        "baseline: docker run --rm per task": bench_docker_run(problems[: args.naive], args.workers),
        "baseline: docker exec per task": bench_docker_exec(problems[: args.naive], args.workers),
    }
    ready, memory = asyncio.run(_start_times(5))

    print(f"machine: {os.cpu_count()} CPUs; workers/concurrency: {args.workers}")
    print(f"{'':38}{'tasks':>7}{'passed':>8}{'tasks/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, row in rows.items():
        print(
            f"{name:38}{row['tasks']:>7}{row['passed']:>8}{row['tasks_per_s']:>10.1f}"
            f"{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}"
        )
    docker = rows["rft-sandbox, docker backend"]["tasks_per_s"]
    bwrap = rows["rft-sandbox, bwrap backend"]["tasks_per_s"]
    run = rows["baseline: docker run --rm per task"]["tasks_per_s"]
    print(f"\nbwrap / docker throughput: {bwrap / docker:.2f}x (target <= 1.5x)")
    print(f"docker backend / docker run baseline: {docker / run:.1f}x (target >= 30x)")
    print(f"container start-to-ready: median {statistics.median(ready):.0f} ms (of {len(ready)})")
    print(f"memory of a warm container (cgroup usage): median {statistics.median(memory):.1f} MiB")
    if args.json:
        Path(args.json).write_text(json.dumps({**rows, "start_ms": ready, "memory_mib": memory}, indent=2))


if __name__ == "__main__":
    main()
