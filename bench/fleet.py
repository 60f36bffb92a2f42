"""The Ray path against one plain server, recovery from a killed node, tasks lost.

    python3 -m bench.fleet [--repeat 2] [--rounds 2] [--kill-tasks 240]

Everything runs in a fresh network namespace (the script re-runs itself under
`unshare --net` with loopback up), so the Ray cluster's and the servers' addresses are all
127.0.0.1. Same work, same run, rounds alternated:

* plain: one `python -m sandbox serve --workers 2` process, targeted by HOST:PORT;
* ray x1: a `ray up --replicas 1 --workers 2` fleet on a simulated 3-node cluster
  (`ray.cluster_utils.Cluster`), targeted by `ray://NAME`;
* ray x3: `ray up` (one replica per node, 1 worker each: 3 sandboxes on the machine's 2
  cores), targeted by `ray://NAME`.

The work is HumanEval's canonical solutions (each sample made distinct), sent by 8 plugin
clients at once, each on a connection of its own (`score_all`, as trainer processes do).
Figures: tasks/s, the Ray path's cost per task against plain (ms of wall time per task),
and the service processes' own CPU per task (utime+stime from /proc: the `serve` process,
or the replicas' Ray worker processes, never their sandboxes), with the tasks/s ceiling it
implies per process. Then the kill: a batch of slow tasks through ray x3, a worker node
removed mid-batch (`remove_node`, not graceful) and a new one added at once (what an
autoscaler does): tasks lost or answered twice, the batch's time against the same batch
with no kill, and the time until the fleet serves at full size again.

On 2 cores the fleet cannot be faster than one server: the replicas share the same two
cores, and the cluster's own processes (GCS, raylets) take some of them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_IN_NETNS = "RFT_BENCH_NETNS"


def _reexec_in_netns() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        raise SystemExit("bench/fleet needs unshare and ip (util-linux, iproute2)")
    env = {**os.environ, _IN_NETNS: "1", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    command = " ".join([f"ip link set lo up && exec {sys.executable} -m bench.fleet", *sys.argv[1:]])
    raise SystemExit(subprocess.run(["unshare", "--net", "sh", "-c", command], cwd=ROOT, env=env).returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="HumanEval passes per measurement (164 tasks each)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of plain / ray x1 / ray x3, alternated")
    parser.add_argument("--clients", type=int, default=8, help="plugin clients at once, a connection each")
    parser.add_argument("--kill-tasks", type=int, default=240, help="slow tasks in the killed-node batch")
    args = parser.parse_args()
    if os.environ.get(_IN_NETNS) != "1":
        _reexec_in_netns()
    run(args)


# ---------------------------------------------------------------- inside the namespace


def run(args: argparse.Namespace) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from bench.humaneval_throughput import humaneval_tasks
    from bench.service_cpu import cpu_seconds, distinct, node, score
    from sandbox.api import pb
    from sandbox.python.humaneval import load_problems

    base = [distinct(t, i) for i, t in enumerate(humaneval_tasks(load_problems(), args.repeat))]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(3)]
    ray.init(address=cluster.address, namespace="rft-sandbox-bench", log_to_driver=False)
    fleet = Fleet(cluster)
    figures: dict[str, list[dict[str, float]]] = {"plain": [], "ray x1": [], "ray x3": []}
    try:
        for round_ in range(args.rounds):

            def measured(target: str, pids: list[int], label: str, round_: int = round_) -> dict[str, float]:
                # every problem met once first: its test plan cached, as for an RL step's many samples of it
                score(
                    target,
                    [distinct(t, f"warm{label}{round_}") for t in base[: len(base) // args.repeat]],
                    args.clients,
                )
                batch = [distinct(t, f"{label}{round_}") for t in base]
                own0, _ = cpu_seconds(pids)
                results, elapsed = score(target, batch, args.clients)
                own1, _ = cpu_seconds(pids)
                bad = sum(r.status != pb.PASSED for r in results)
                return {"tps": len(results) / elapsed, "cpu_ms": (own1 - own0) * 1000 / len(results), "bad": bad}

            with node(1, 2) as (target, pids):
                figures["plain"].append(measured(target, pids, "plain"))
            figures["ray x1"].append(measured(*fleet.up(replicas=1, workers=2), "x1"))
            figures["ray x3"].append(measured(*fleet.up(replicas=3, workers=1), "x3"))
            fleet.down()
            for name, runs in figures.items():
                last = runs[-1]
                tps, cpu = last["tps"], last["cpu_ms"]
                print(f"round {round_ + 1} {name:7s}: {tps:6.1f} tasks/s, service CPU {cpu:.2f} ms/task")
        report(figures)
        recovery(fleet, cluster, nodes, args.kill_tasks, args.clients)
    finally:
        fleet.down()
        ray.shutdown()
        cluster.shutdown()


class Fleet:
    """The fleet of this benchmark, brought up and down with the `ray` command's own code."""

    NAME = "bench-fleet"

    def __init__(self, cluster: object) -> None:
        self.cluster = cluster
        self.running = False

    def up(self, replicas: int, workers: int) -> tuple[str, list[int]]:
        """`ray up` (the fleet replaced if it runs): its target and its replicas' pids."""
        from sandbox.config import ServiceConfig
        from sandbox.fleet import commands
        from sandbox.fleet.spec import ReplicaSpec

        self.down()
        spec = ReplicaSpec(ServiceConfig(audit_log=os.devnull), backend="bwrap", workers=workers)
        state = commands.up(self.NAME, spec, replicas, wait=180)
        self.running = True
        return f"ray://{self.NAME}", [r["pid"] for r in state["replicas"]]

    def status(self) -> dict:
        from sandbox.fleet import commands

        return commands.status(self.NAME)

    def down(self) -> None:
        from sandbox.fleet import commands

        if self.running:
            commands.down(self.NAME, grace=30)
            self.running = False


def report(figures: dict[str, list[dict[str, float]]]) -> None:
    print("\nmedians over the rounds (same work, same run):")
    columns = ("tasks/s", 8), ("vs plain", 9), ("cost ms/task", 13), ("service CPU ms/task", 20), ("ceiling/proc", 13)
    print(" " * 8 + "".join(f" {name:>{width}s}" for name, width in columns))
    plain = statistics.median(r["tps"] for r in figures["plain"])
    for name, runs in figures.items():
        tps = statistics.median(r["tps"] for r in runs)
        cpu = statistics.median(r["cpu_ms"] for r in runs)
        cost = 1000 / tps - 1000 / plain
        bad = sum(r["bad"] for r in runs)
        print(
            f"{name:8s} {tps:8.1f} {tps / plain:8.2f}x {cost:+13.2f} {cpu:20.2f} {1000 / cpu:11.0f}/s"
            + (f"   ({bad} not PASSED)" if bad else "")
        )


def slow_tasks(prefix: str, count: int, delay: float) -> list:
    """Distinct tasks that each pass after `delay` seconds: a batch long enough to kill a node in."""
    from sandbox.api import pb

    code = f"def add(a, b):\n    import time\n    time.sleep({delay})\n    return a + b\n"
    return [
        pb.Task(
            id=f"{prefix}-{i}",
            language=pb.PYTHON,
            code=f"{code}# {prefix} {i}\n",
            python=pb.PythonSpec(
                entry_point="add",
                call_tests=[pb.CallTest(args_json=f"[{i}, 1]", expected_json=f"{i + 1}")],
            ),
        )
        for i in range(count)
    ]


def recovery(fleet: Fleet, cluster: object, nodes: list, count: int, clients: int) -> None:
    """The same slow batch through ray x3 twice: undisturbed, then with a node killed a third
    of the way in (its replica's process SIGKILLed, the node removed, not gracefully) and a
    new node added once the fleet has seen the loss (what an autoscaler does)."""
    from bench.service_cpu import score
    from sandbox.api import pb

    target, _ = fleet.up(replicas=3, workers=1)
    calm, calm_s = score(target, slow_tasks("calm", count, 0.05), clients)
    sent = slow_tasks("kill", count, 0.05)
    outcome: dict[str, object] = {}

    def batch() -> None:
        outcome["results"], outcome["seconds"] = score(target, sent, clients)

    worker = threading.Thread(target=batch)
    worker.start()
    time.sleep(calm_s / 3)
    replica = next(r for r in fleet.status()["replicas"] if any(r.get("node_id") == n.node_id for n in nodes))
    victim = next(n for n in nodes if n.node_id == replica["node_id"])
    killed = time.monotonic()
    # a machine that dies takes its processes with it: the replica's process at once (in this
    # simulation remove_node kills the raylet, and the node's workers would notice only later)
    os.kill(replica["pid"], signal.SIGKILL)
    cluster.remove_node(victim, allow_graceful=False)  # type: ignore[attr-defined]
    removed = time.monotonic() - killed  # remove_node returns once the node's processes are gone
    nodes.remove(victim)
    left = wait_for(lambda: sum(r["serving"] for r in fleet.status()["replicas"]) < 3, killed)
    nodes.append(cluster.add_node(num_cpus=2))  # type: ignore[attr-defined]  (an autoscaler's replacement)
    added = time.monotonic() - killed
    live = {n.node_id for n in nodes}

    def full() -> bool:
        serving = [r for r in fleet.status()["replicas"] if r["serving"]]
        return len(serving) == 3 and {r["node_id"] for r in serving} <= live

    back = wait_for(full, killed)  # clients see it within discovery's cache time (3 s)
    worker.join(600)
    results: list[pb.Result] = outcome.get("results", [])  # type: ignore[assignment]
    ids = [r.id for r in results]
    lost = len({t.id for t in sent} - {r.id for r in results if r.status == pb.PASSED})
    twice = len(ids) - len(set(ids))
    errors = sum(r.status == pb.SANDBOX_ERROR for r in results)
    print(f"\nkilled node ({count} tasks of 50 ms, ray x3, 8 clients):")
    print(f"  batch with no kill: {calm_s:.1f} s ({sum(r.status == pb.PASSED for r in calm)}/{count} passed)")
    print(f"  batch with the kill: {outcome.get('seconds', float('nan')):.1f} s")
    print(f"  tasks lost (no PASSED result): {lost}; answered twice: {twice}; SANDBOX_ERROR: {errors}")
    print(f"  remove_node returned after {removed:.1f} s")
    print(f"  the dead replica out of the fleet (no longer served to clients) after: {left:.1f} s")
    print(f"  a new node added at {added:.1f} s; the fleet back at 3 serving replicas after: {back:.1f} s")


def wait_for(condition: Callable[[], bool], since: float, timeout: float = 300.0) -> float:
    """Seconds from `since` until `condition()` holds (polled every 0.1 s); inf if it never does."""
    while time.monotonic() - since < timeout:
        if condition():
            return time.monotonic() - since
        time.sleep(0.1)
    return float("inf")


if __name__ == "__main__":
    main()
