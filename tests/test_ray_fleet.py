"""The Ray fleet on a real three-node Ray cluster (`ray.cluster_utils.Cluster`).

The cluster runs in a fresh network namespace (`unshare --net`, loopback up), so every
Ray and gRPC address is 127.0.0.1 and nothing leaves the machine; dashboard and usage
stats off. The cases run in order in one process there (`tests/ray_fleet_cases.py`: each
builds on the cluster the previous one left); each test here checks one case's outcome.
The cases stop only what they started (`cluster.shutdown()`, `ray down`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "tests/ray_fleet_cases.py"
_RUN_SECONDS = 240


@pytest.fixture(scope="module")
def outcome() -> tuple[dict[str, str], str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.fail("the Ray fleet tests need unshare and ip (util-linux, iproute2)")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    command = f"ip link set lo up && exec {sys.executable} {SCRIPT}"
    try:
        run = subprocess.run(
            ["unshare", "--net", "sh", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=_RUN_SECONDS,
        )
        output = run.stdout + run.stderr
    except subprocess.TimeoutExpired as exc:
        output = f"timed out after {_RUN_SECONDS}s\n{exc.stdout or ''}{exc.stderr or ''}"
    cases = {}
    for line in output.splitlines():
        if line.startswith("CASE "):
            _, name, verdict = line.split(" ", 2)
            cases[name] = verdict
    return cases, output


CASES = [
    "up_distinct_nodes",  # `ray up`: one replica per node, on three distinct nodes, all serving
    "batch_spread",  # a batch through RFT_SANDBOX_TARGETS=ray://NAME: spread over all; the token reached them
    "replica_restarts",  # a replica's process killed: Ray starts it again on its node, discovery follows
    "unknown_fleet",  # ray://a-name-no-fleet-has: SANDBOX_ERROR results, no exception
    "controller_restarts",  # the controller killed: Ray restarts it, it adopts the same replicas
    "node_killed_mid_batch",  # a node removed mid-batch: each task one result, all passed; it leaves discovery
    "replica_comes_back",  # a node added: a replica is placed on it and discovery lists it
    "scale",  # `ray up --replicas 2`: the surplus replica is drained and removed
    "cpus_per_replica",  # up --cpus-per-replica 1: a new set reserving 1 CPU each replaces the old one
    "down_drains",  # `ray down` during a batch: accepted tasks finish, one result each, controller gone
]


@pytest.mark.parametrize("case", CASES)
def test_ray_fleet(case: str, outcome: tuple[dict[str, str], str]) -> None:
    cases, output = outcome
    verdict = cases.get(case, "not reached")
    shown = "\n".join(line for line in output.splitlines() if "[state-dump]" not in line)  # raylet noise
    assert verdict.startswith("ok"), f"{case}: {verdict}\n--- output of {SCRIPT} ---\n{shown[-8000:]}"
