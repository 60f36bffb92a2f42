"""`python -m sandbox ray up|down|status`: the fleet's commands on a running Ray cluster."""

from __future__ import annotations

import json
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sandbox.api.fleet import RAY_NAMESPACE
from sandbox.fleet.controller import Controller, cpu_nodes
from sandbox.fleet.spec import ReplicaSpec

_CONTROLLER = ray.remote(Controller)
_HEAD_RESOURCE = "node:__internal_head__"  # the resource Ray gives the head node


def connect(address: str) -> None:
    """Join the cluster (a process already connected, e.g. a test's driver, stays as it is)."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=RAY_NAMESPACE, log_to_driver=False)


def controller(name: str) -> Any:
    try:
        return ray.get_actor(name, namespace=RAY_NAMESPACE)
    except ValueError:
        raise SystemExit(f"no fleet named {name!r} in this cluster (run: python -m sandbox ray up)") from None


def up(name: str, spec: ReplicaSpec, replicas: int, wait: float) -> dict[str, Any]:
    """Create the fleet or change it (another count, other settings); wait until it serves."""
    if replicas <= 0:
        replicas = len(cpu_nodes()) if spec.per_node else 1
    handle = _CONTROLLER.options(
        name=name,
        namespace=RAY_NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_concurrency=16,
        num_cpus=0,
        scheduling_strategy=_head_node(),
    ).remote(name)
    ray.get(handle.scale.remote(spec, replicas))
    deadline = time.monotonic() + wait
    while True:
        state = ray.get(handle.status.remote())
        live = [r for r in state["replicas"] if r["serving"] and not r["retiring"]]
        if len(live) >= replicas and len(state["replicas"]) == replicas:
            return state
        if time.monotonic() > deadline:
            raise SystemExit(
                f"fleet {name!r}: {len(live)} of {replicas} replicas serving after {wait:.0f}s\n" + render(state)
            )
        time.sleep(0.5)


def _head_node() -> NodeAffinitySchedulingStrategy:
    """The controller lives on the head node, the one node whose loss ends the cluster anyway
    (a restart elsewhere would land on a node that may go away); on the node `up` runs on
    where no head is named."""
    for node in ray.nodes():
        if node["Alive"] and _HEAD_RESOURCE in node["Resources"]:
            return NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)


def down(name: str, grace: float) -> list[dict[str, Any]]:
    """Drain every replica (accepted tasks finish), then remove them and the controller."""
    handle = controller(name)
    drained = ray.get(handle.shutdown.remote(grace))
    ray.kill(handle, no_restart=True)
    return drained


def status(name: str) -> dict[str, Any]:
    return ray.get(controller(name).status.remote())


def render(state: dict[str, Any]) -> str:
    lines = [f"fleet {state['name']}: {state['target']} replicas wanted"]
    for r in state["replicas"]:
        flags = "serving" if r["serving"] else "not serving"
        if r["retiring"]:
            flags += ", retiring"
        lines.append(
            f"  {r['replica']}  node {r.get('node_id', '?')[:12]}  {r.get('address', '-'):21}  {flags}  "
            f"workers {r.get('workers', '-')}  busy {r.get('busy', '-')}  queued {r.get('queued', '-')}  "
            f"jobs {r.get('jobs', '-')}" + (f"  metrics {r['metrics']}" if r.get("metrics") else "")
        )
    return "\n".join(lines)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
