"""The Ray fleet's cases on a real three-node Ray cluster; run by tests/test_ray_fleet.py.

It must run inside a fresh network namespace (every Ray address is 127.0.0.1 there): the
test module starts it under `unshare --net`. Each case prints `CASE name ok` or
`CASE name FAIL why`; later cases build on earlier ones, so the first failure ends the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable

import ray
from ray.cluster_utils import Cluster

from sandbox import cli
from sandbox.api import pb
from sandbox.fleet import commands
from sandbox.fleet.controller import POLL_SECONDS
from tests.helpers import call_task, status_name
from trainer_plugin import discovery
from trainer_plugin.client import ClientOptions, SandboxClient
from trainer_plugin.rewards import options_from_env

NAME = "fleet-test"
TOKEN = "fleet-test-token"
UP = ["ray", "up", "--name", NAME, "--backend", "bwrap", "--workers", "1", "--token", TOKEN, "--audit-log", "/dev/null"]
NODE_CPUS = 2
SLOW_ADD = "def add(a, b):\n    import time\n    time.sleep({delay})\n    return a + b\n"


def tasks(prefix: str, count: int, delay: float = 0.0) -> list[pb.Task]:
    """Distinct tasks (the client scores identical ones once), each passing."""
    code = SLOW_ADD.format(delay=delay)
    return [call_task(f"{prefix}-{i}", code, "add", [([i, 1], i + 1)]) for i in range(count)]


def check_one_each(sent: list[pb.Task], results: list[pb.Result], allow_errors: bool = False) -> None:
    ids = [r.id for r in results]
    assert len(results) == len(sent), f"{len(results)} results for {len(sent)} tasks"
    assert ids == [t.id for t in sent] and len(set(ids)) == len(ids), "ids differ or repeat"
    bad = [(r.id, status_name(r), r.message[:120]) for r in results if r.status != pb.PASSED]
    if allow_errors:
        bad = [b for b in bad if b[1] != "SANDBOX_ERROR"]
    assert not bad, f"not passed: {bad[:5]}"


def status() -> dict:
    return commands.status(NAME)


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; status: {commands.render(status())}")


def serving(state: dict) -> list[dict]:
    return [r for r in state["replicas"] if r["serving"] and not r["retiring"]]


def main() -> int:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": NODE_CPUS, "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=NODE_CPUS) for _ in range(2)]
    ray.init(address=cluster.address, namespace="rft-sandbox-test", log_to_driver=False)
    os.environ.update(RFT_SANDBOX_TARGETS=f"ray://{NAME}", RFT_SANDBOX_TOKEN=TOKEN)  # as a trainer is configured
    client = SandboxClient(options_from_env(timeout=180, batch_size=2, max_concurrency=6))
    failed = False
    try:
        for name, case in CASES:
            started = time.monotonic()
            try:
                case(cluster, nodes, client)
            except Exception as exc:  # reported, and the run ends
                print(f"CASE {name} FAIL {exc!r}", flush=True)
                traceback.print_exc()
                failed = True
                break
            print(f"CASE {name} ok ({time.monotonic() - started:.1f}s)", flush=True)
    finally:
        client.close()
        with contextlib.suppress(SystemExit):  # already down (the last case)
            commands.down(NAME, 5.0)
        ray.shutdown()
        cluster.shutdown()
    return 1 if failed else 0


def case_up_distinct_nodes(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    assert cli.main([*UP, "--address", cluster.address, "--drain-seconds", "20", "--wait", "120"]) == 0
    state = status()
    live = serving(state)
    assert len(live) == 3, commands.render(state)
    assert len({r["node_id"] for r in live}) == 3, f"replicas share nodes: {commands.render(state)}"
    assert sorted(r["address"] for r in live) == discovery.expand([f"ray://{NAME}"])
    for extra in ([], ["--json"]):
        assert cli.main(["ray", "status", "--address", cluster.address, "--name", NAME, *extra]) == 0


def case_batch_spread(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    sent = tasks("spread", 24, delay=0.05)
    check_one_each(sent, client.score_all(sent))
    worked = {address: _jobs_done(address) for address in discovery.expand([f"ray://{NAME}"])}
    assert len(worked) == 3 and all(jobs > 0 for jobs in worked.values()), f"a replica did no work: {worked}"
    anonymous = SandboxClient(ClientOptions(f"ray://{NAME}", timeout=30, retries=0))
    try:  # the token reached every replica: without it nothing is scored
        refused = anonymous.score_all(tasks("anonymous", 3))
    finally:
        anonymous.close()
    assert all(r.status == pb.SANDBOX_ERROR and "UNAUTHENTICATED" in r.message for r in refused), refused


def _jobs_done(address: str) -> int:
    """What the replica itself says (its Stats), not the controller's last poll."""
    direct = SandboxClient(ClientOptions(address, token=TOKEN, timeout=30))
    try:
        return direct.stats().jobs_completed
    finally:
        direct.close()


def case_replica_restarts(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    victim = serving(status())[0]
    os.kill(victim["pid"], signal.SIGKILL)  # the replica's process (this test started it, through Ray)

    def restarted() -> bool:
        again = [r for r in serving(status()) if r["replica"] == victim["replica"]]
        return bool(again) and again[0]["pid"] != victim["pid"]

    wait_until("Ray to restart the replica", restarted, 60)
    again = next(r for r in serving(status()) if r["replica"] == victim["replica"])
    assert again["node_id"] == victim["node_id"], "a pinned replica restarted on another node"
    wait_until("discovery to follow", lambda: again["address"] in discovery.expand([f"ray://{NAME}"]), 15)
    sent = tasks("restarted", 9)
    check_one_each(sent, client.score_all(sent))


def case_unknown_fleet(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    lost = SandboxClient(ClientOptions("ray://no-such-fleet", timeout=20, retries=1))
    try:  # no replicas: each task a SANDBOX_ERROR result (the trainer drops it), no exception
        results = lost.score_all(tasks("lost", 2))
    finally:
        lost.close()
    assert [r.status for r in results] == [pb.SANDBOX_ERROR] * 2, results


def case_controller_restarts(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    state = status()
    before = {r["replica"]: r["address"] for r in serving(state)}
    ray.kill(commands.controller(NAME), no_restart=False)
    wait_until(
        "a new controller",
        lambda: _state().get("controller_pid", state["controller_pid"]) != state["controller_pid"],
        60,
    )
    wait_until("the controller to adopt its replicas", lambda: _addresses() == before, 30)
    assert status()["controller_node"] == cluster.head_node.node_id, "the controller left the head node"
    sent = tasks("adopted", 6)
    check_one_each(sent, client.score_all(sent))


def _state() -> dict:
    try:
        return status()
    except ray.exceptions.RayError:  # restarting
        return {"replicas": []}


def _addresses() -> dict[str, str]:
    return {r["replica"]: r["address"] for r in serving(_state())}


def case_node_killed_mid_batch(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    victim_node = nodes[0]
    victim_id = victim_node.node_id
    before = {r["node_id"]: r["jobs"] for r in serving(status())}
    sent = tasks("kill", 30, delay=0.3)
    results: list[pb.Result] = []
    worker = threading.Thread(target=lambda: results.extend(client.score_all(sent)))
    worker.start()
    wait_until("the victim to start work", lambda: _jobs_on(victim_id) > before.get(victim_id, 0), 60)
    victim = next(r for r in status()["replicas"] if r.get("node_id") == victim_id)
    os.kill(victim["pid"], signal.SIGKILL)  # a machine that dies takes its processes with it
    cluster.remove_node(victim_node, allow_graceful=False)

    def shown_serving() -> bool:
        return any(r["serving"] for r in status()["replicas"] if r.get("node_id") == victim_id)

    # well before Ray declares the node dead (about 13 s here), the controller's polls fail
    wait_until("status to show the lost replica not serving", lambda: not shown_serving(), 8)
    worker.join(180)
    assert not worker.is_alive(), "the batch did not finish"
    check_one_each(sent, results)
    wait_until("the lost replica to leave the endpoints", lambda: len(discovery.resolve(NAME)) == 2, 30)


def _jobs_on(node_id: str) -> int:
    return sum(r["jobs"] for r in status()["replicas"] if r.get("node_id") == node_id)


def case_replica_comes_back(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    old = set(discovery.resolve(NAME))
    fresh = cluster.add_node(num_cpus=NODE_CPUS)
    nodes.append(fresh)
    wait_until("a replica on the new node", lambda: any(r["node_id"] == fresh.node_id for r in serving(status())), 90)
    wait_until("discovery to follow", lambda: len(set(discovery.expand([f"ray://{NAME}"])) - old) == 1, 15)
    sent = tasks("back", 12)
    check_one_each(sent, client.score_all(sent))


def case_scale(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    assert cli.main([*UP, "--address", cluster.address, "--drain-seconds", "20", "--replicas", "2"]) == 0
    wait_until("two replicas", lambda: len(status()["replicas"]) == 2, 60)
    wait_until("discovery to follow", lambda: len(discovery.expand([f"ray://{NAME}"])) == 2, 15)


def case_cpus_per_replica(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    free = ray.available_resources().get("CPU", 0)
    argv = [*UP, "--address", cluster.address, "--drain-seconds", "20", "--replicas", "3", "--cpus-per-replica", "1"]
    assert cli.main([*argv, "--metrics"]) == 0  # other settings: a new set of three, the old two drained once it serves
    wait_until("the old set to go", lambda: len(status()["replicas"]) == 3, 60)
    assert all(r["workers"] == 1 for r in serving(status()))
    wait_until("one CPU reserved per replica", lambda: ray.available_resources().get("CPU", 0) == free - 3, 15)
    wait_until("discovery to follow", lambda: len(discovery.expand([f"ray://{NAME}"])) == 3, 15)
    sent = tasks("reserved", 9)
    check_one_each(sent, client.score_all(sent))
    # --metrics: each replica's own Prometheus endpoint, in status, counts the tasks it scored
    time.sleep(2 * POLL_SECONDS)
    scored = 0
    for replica in serving(status()):
        text = urllib.request.urlopen(f"http://{replica['metrics']}/metrics", timeout=10).read().decode()
        assert "rft_sandbox_build_info" in text, text[:300]
        scored += sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("rft_sandbox_tasks_total{")
        )
    assert scored == len(sent), f"the replicas' metrics count {scored} tasks, {len(sent)} were sent"


def case_down_drains(cluster: Cluster, nodes: list, client: SandboxClient) -> None:
    sent = tasks("down", 12, delay=0.5)
    results: list[pb.Result] = []
    worker = threading.Thread(target=lambda: results.extend(client.score_all(sent)))
    worker.start()
    wait_until("work in flight", lambda: sum(r["busy"] for r in status()["replicas"]) > 0, 30)
    assert cli.main(["ray", "down", "--address", cluster.address, "--name", NAME, "--drain-seconds", "30"]) == 0
    worker.join(120)
    assert not worker.is_alive(), "the batch did not finish"
    # accepted tasks finish; those not yet sent when the fleet went have nowhere to go: SANDBOX_ERROR
    check_one_each(sent, results, allow_errors=True)
    finished = sum(r.status == pb.PASSED for r in results)
    assert finished > 0, "no accepted task finished during the drain"
    try:
        ray.get_actor(NAME, namespace="rft-sandbox")
    except ValueError:
        return
    raise AssertionError("the controller is still there after down")


CASES = [
    ("up_distinct_nodes", case_up_distinct_nodes),
    ("batch_spread", case_batch_spread),
    ("replica_restarts", case_replica_restarts),
    ("unknown_fleet", case_unknown_fleet),
    ("controller_restarts", case_controller_restarts),
    ("node_killed_mid_batch", case_node_killed_mid_batch),
    ("replica_comes_back", case_replica_comes_back),
    ("scale", case_scale),
    ("cpus_per_replica", case_cpus_per_replica),
    ("down_drains", case_down_drains),
]

if __name__ == "__main__":
    sys.exit(main())
