"""The service's own CPU per task, the tasks/s ceiling it implies, and `--processes 1` vs `2`.

    python bench/service_cpu.py [--repeat 2] [--sql 600] [--workers 2] [--clients 8] [--profile]

A real `python -m sandbox serve` (bwrap) gets cheap tasks through the plugin client
(`SandboxClient.score_all`, `--clients` clients at once, each on a connection of its own,
like that many trainer processes): HumanEval canonical solutions, then SQL tasks on the
test suite's company database (three files per task). CPU is read from /proc, in clock
ticks, before and after each workload:

* service: utime+stime of the service process(es) themselves (all their threads: the event
  loop, gRPC's C-core pollers, the metrics thread), never their children;
* workers: utime+stime of every descendant (the bwrap sandboxes, their runners, the
  candidates they fork and reap, counted through cutime/cstime), plus what the service
  reaped (recycled workers).

ms of service CPU per task gives the ceiling of one service process: 1000 / ms tasks/s,
whatever the number of cores (its event loop is one thread). Then the same Python workload
through `--processes 1` and `--processes 2`, same run, same total workers. `--profile`
runs the service once more under cProfile (RFT_SANDBOX_PROFILE) and prints where its own
time goes (the Python side; gRPC's C core is not seen by cProfile).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.humaneval_throughput import _children, _free_port, _wait_ready, humaneval_tasks  # noqa: E402
from bench.sql_throughput import ANSWERS, GOLD  # noqa: E402
from sandbox.api import pb  # noqa: E402
from sandbox.python.humaneval import load_problems  # noqa: E402
from sandbox.sql.samples import build_company  # noqa: E402
from trainer_plugin.client import ClientOptions, SandboxClient  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)  # a client's channel does not share a sibling's TCP


def _stat(pid: int) -> list[int]:
    """utime, stime, cutime, cstime of a process, in clock ticks (zeros if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return [0, 0, 0, 0]
    return [int(value) for value in fields[11:15]]


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        children = _children(stack.pop())
        out += children
        stack += children
    return out


def cpu_seconds(services: list[int]) -> tuple[float, float]:
    """(the services' own CPU, their workers' CPU), seconds so far."""
    own = workers = 0
    for pid in services:
        utime, stime, cutime, cstime = _stat(pid)
        own += utime + stime
        workers += cutime + cstime
        for child in _descendants(pid):
            workers += sum(_stat(child))
    return own / _TICK, workers / _TICK


@contextlib.contextmanager
def node(
    processes: int, workers: int, *options: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[int]]]:
    """A `serve --processes N` node: its target and its service processes' pids, ready."""
    port = _free_port()
    command = [sys.executable, "-m", "sandbox", "serve", "--backend", "bwrap", "--port", str(port)]
    command += ["--workers", str(workers), "--processes", str(processes), "--audit-log", os.devnull]
    command += ["--log-level", "WARNING", *options]
    server = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    target = f"127.0.0.1:{port}"
    try:
        probe = SandboxClient(ClientOptions(target, timeout=60, channel_args=OWN_CONNECTION))
        _wait_ready(probe, time.monotonic() + 120)
        probe.close()
        services = [server.pid] if processes == 1 else _children(server.pid)
        deadline = time.monotonic() + 120
        while processes > 1 and sum(len(_children(pid)) >= 1 for pid in services) < processes:
            if time.monotonic() > deadline:
                raise SystemExit("the service processes did not start their workers")
            time.sleep(0.2)  # every process has its warm workers (so each is serving)
            services = _children(server.pid)
        yield target, services
    finally:
        server.terminate()
        server.wait(120)


def score(target: str, tasks: list[pb.Task], clients: int) -> tuple[list[pb.Result], float]:
    """`tasks` split over `clients` plugin clients scoring at once; results and seconds."""
    shares = [tasks[i::clients] for i in range(clients)]
    results: list[list[pb.Result]] = [[] for _ in shares]
    made = [
        SandboxClient(ClientOptions(target, timeout=600, batch_size=64, channel_args=OWN_CONNECTION)) for _ in shares
    ]
    for client in made:
        client.stats()  # connected before the clock starts

    def run(index: int) -> None:
        results[index] = made[index].score_all(shares[index])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    for client in made:
        client.close()
    return [r for share in results for r in share], elapsed


def measure(target: str, services: list[int], tasks: list[pb.Task], clients: int) -> dict[str, float]:
    """Two passes of `tasks` (each task's code made distinct per pass): the first meets each
    test set (HumanEval problem, SQL gold) for the first time, the second finds its plan and
    memos cached, as an RL step's many samples of one problem do."""
    figures: dict[str, float] = {}
    for name in ("cold", "warm"):
        batch = [distinct(task, name) for task in tasks]
        own0, workers0 = cpu_seconds(services)
        results, elapsed = score(target, batch, clients)
        own1, workers1 = cpu_seconds(services)
        count = len(results)
        figures[f"{name}_service_ms"] = (own1 - own0) * 1000 / count
        figures[f"{name}_tasks_per_s"] = count / elapsed
        figures["workers_ms"] = (workers1 - workers0) * 1000 / count
        figures["tasks"], figures["passed"] = count, sum(r.status == pb.PASSED for r in results)
        figures["errors"] = sum(r.status == pb.SANDBOX_ERROR for r in results)
    figures["ceiling"] = 1000 / figures["warm_service_ms"] if figures["warm_service_ms"] else float("inf")
    return figures


def distinct(task: pb.Task, index: int | str) -> pb.Task:
    """The task with a comment of its own: the client scores equal tasks once, the bench wants each sent."""
    copy = pb.Task()
    copy.CopyFrom(task)
    comment = "--" if task.language == pb.SQL else "#"
    copy.code = f"{task.code}\n{comment} {index}\n"
    return copy


def sql_tasks(count: int) -> list[pb.Task]:
    return [
        pb.Task(
            id=f"sql{i}",
            language=pb.SQL,
            code=f"{ANSWERS[i % len(ANSWERS)]} -- {i}",  # distinct: the client scores equal tasks once
            sql=pb.SqlSpec(database="company", gold_sql=GOLD),
        )
        for i in range(count)
    ]


def profile(workers: int, python: list[pb.Task], clients: int, top: int = 25) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = str(Path(tmp) / "serve")
        with node(1, workers, env={"RFT_SANDBOX_PROFILE": prefix}) as (target, _):
            score(target, python, clients)
        dumps = list(Path(tmp).glob("serve.*"))
        if not dumps:
            print("no profile was written")
            return
        print(f"\nwhere one service process's own (Python) time goes, {len(python)} HumanEval tasks, by tottime:")
        stats = pstats.Stats(str(dumps[0]))
        stats.sort_stats("tottime").print_stats(top)
        print("the same, our modules by cumulative time:")
        stats.sort_stats("cumulative").print_stats(r"(sandbox|rewards)/", top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="HumanEval passes (164 tasks each)")
    parser.add_argument("--sql", type=int, default=600, help="SQL tasks")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="warm sandboxes, all processes")
    parser.add_argument("--clients", type=int, default=8, help="plugin clients at once, a connection each")
    parser.add_argument("--profile", action="store_true", help="also profile one service process")
    args = parser.parse_args()
    python = [distinct(task, i) for i, task in enumerate(humaneval_tasks(load_problems(), args.repeat))]
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        database = build_company(Path(tmp) / "company")
        with node(1, args.workers, "--database", f"company={database}") as (target, services):
            rows["HumanEval canonical, --processes 1"] = measure(target, services, python, args.clients)
            rows["SQL (3 files/task), --processes 1"] = measure(target, services, sql_tasks(args.sql), args.clients)
        with node(2, args.workers, "--database", f"company={database}") as (target, services):
            rows["HumanEval canonical, --processes 2"] = measure(target, services, python, args.clients)
            rows["SQL (3 files/task), --processes 2"] = measure(target, services, sql_tasks(args.sql), args.clients)
    print(f"machine: {os.cpu_count()} CPUs; workers (all processes): {args.workers}; clients: {args.clients}")
    print(f"{'':38}{'tasks':>6}{'passed':>7}{'errors':>7}{'tasks/s':>9}{'service ms':>11}{'cold ms':>9}", end="")
    print(f"{'workers ms':>11}{'ceiling/s':>10}")
    for name, row in rows.items():
        print(
            f"{name:38}{row['tasks']:>6}{row['passed']:>7}{row['errors']:>7}{row['warm_tasks_per_s']:>9.1f}"
            f"{row['warm_service_ms']:>11.2f}{row['cold_service_ms']:>9.2f}{row['workers_ms']:>11.2f}"
            f"{row['ceiling']:>10.0f}"
        )
    print("service ms: CPU of the service process(es) themselves per task, children excluded, test sets seen before")
    print("  (the steady state: an RL step sends many samples of each problem); cold ms: the first time;")
    print("workers ms: CPU of the sandboxes (runners, candidates) per task (approximate: a recycled worker's")
    print("  CPU is lost between its exit and its reaping); tasks/s: the warm pass, end to end;")
    print("ceiling/s: 1000 / service ms = the tasks/s one service process can reach on any number of cores.")
    one = rows["HumanEval canonical, --processes 1"]["warm_tasks_per_s"]
    two = rows["HumanEval canonical, --processes 2"]["warm_tasks_per_s"]
    print(f"\nHumanEval tasks/s, --processes 2 / --processes 1: {two / one:.2f}x on {os.cpu_count()} CPUs")
    if (os.cpu_count() or 1) <= 2:
        print("(on 2 CPUs the sandboxes already take most of the CPU: a second service process cannot add cores)")
    if args.profile:
        profile(args.workers, python, args.clients)


if __name__ == "__main__":
    main()
