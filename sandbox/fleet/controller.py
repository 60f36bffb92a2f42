"""The fleet's controller: a detached named actor that places replicas and watches them.

It holds what `up` asked for (a `ReplicaSpec` and a count) and keeps the cluster there:
  - one replica per node (pinned to it: `NodeAffinitySchedulingStrategy`, hard), or one per
    K CPUs anywhere (`SPREAD`, K CPUs reserved); placed on nodes that have CPUs;
  - each replica is a detached named actor with `max_restarts=-1`: a replica process that
    dies is started again by Ray (on its node; with K CPUs wherever K are free); a pinned
    replica whose node is gone is removed and placed again on a node without one, as soon
    as there is such a node;
  - a change of settings starts a new set, and drains the old one once the new one serves;
    a lower count drains the surplus; `shutdown` drains them all.
`endpoints()` is what clients ask: the address of every replica that answered its last
health poll as serving. The replicas are named so that a controller Ray restarts adopts
them (and their settings) instead of starting a second fleet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from sandbox.api.fleet import RAY_NAMESPACE
from sandbox.fleet.replica import Replica
from sandbox.fleet.spec import ReplicaSpec

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5  # how often each replica's health is read
_ANSWER_SECONDS = 2.0  # a poll unanswered for this long: the replica is not serving
_SWITCH_SECONDS = 120.0  # a new set not serving after this long: the old one is drained anyway
_ADOPT_SECONDS = 5.0  # a replica found by a restarted controller must say what it is by then
_REPLICA = ray.remote(Replica)


@dataclass
class Slot:
    key: str
    handle: Any
    spec: ReplicaSpec
    node_id: str | None  # the node a pinned replica lives on
    retiring: bool = False  # of old settings, or surplus: drained once no longer needed
    draining: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    serving: bool = False
    poll: Any = None  # the info call in flight
    polled: float = 0.0


class Controller:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._spec: ReplicaSpec | None = None
        self._target = 0
        self._since = time.monotonic()  # when the current settings were given
        self._slots: dict[str, Slot] = {}
        self._stopping = False
        self._adopt()
        threading.Thread(target=self._watch, name="rft-sandbox-fleet", daemon=True).start()

    def _prefix(self) -> str:
        return f"{self.name}.replica."

    def _adopt(self) -> None:
        """A controller started again finds its fleet's replicas by name and keeps them; one
        that does not answer (its node gone, or stuck) is removed and counts for a
        replacement, so the fleet keeps its size."""
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] != RAY_NAMESPACE or not entry["name"].startswith(self._prefix()):
                continue
            handle = ray.get_actor(entry["name"], namespace=RAY_NAMESPACE)
            self._target += 1
            try:
                spec, node_id = ray.get(handle.placement.remote(), timeout=_ADOPT_SECONDS)
            except (ray.exceptions.RayError, TimeoutError):
                ray.kill(handle, no_restart=True)
                continue
            key = entry["name"][len(self._prefix()) :]
            self._slots[key] = Slot(key, handle, spec, node_id)
            self._spec = spec

    # -- what `up`, `down`, `status` and clients call ------------------------------------------

    def scale(self, spec: ReplicaSpec, replicas: int) -> None:
        with self._lock:
            if spec != self._spec:
                for slot in self._slots.values():
                    slot.retiring = True
                self._since = time.monotonic()
            self._spec, self._target = spec, replicas
            self._reconcile()

    def endpoints(self) -> list[str]:
        with self._lock:
            return sorted(slot.info["address"] for slot in self._slots.values() if slot.serving)

    def status(self) -> dict[str, Any]:
        with self._lock:
            replicas = [
                # the controller's own view last: the replica's last answer may predate its death
                {**s.info, "replica": s.key, "retiring": s.retiring, "serving": s.serving}
                for s in sorted(self._slots.values(), key=lambda s: s.key)
            ]
            return {
                "name": self.name,
                "target": self._target,
                "controller_pid": os.getpid(),
                "controller_node": ray.get_runtime_context().get_node_id(),
                "replicas": replicas,
            }

    def shutdown(self, grace: float) -> list[dict[str, Any]]:
        """Drain every replica at once (each refuses new calls, finishes what it accepted),
        then remove them; each one's last health poll is returned (what it was doing)."""
        with self._lock:
            self._stopping = True
            slots = list(self._slots.values())
        for slot in slots:
            slot.serving = False
        drains = [(slot, slot.handle.drain.remote(grace)) for slot in slots]
        done = []
        for slot, ref in drains:
            try:
                ray.get(ref, timeout=grace + 60)
                done.append({**slot.info, "replica": slot.key, "drained": True})
            except ray.exceptions.RayError as exc:
                done.append({**slot.info, "replica": slot.key, "drained": False, "error": str(exc)[:300]})
            ray.kill(slot.handle, no_restart=True)
        with self._lock:
            self._slots.clear()
        return done

    # -- the watch loop --------------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping:
            try:
                self._poll()
                with self._lock:
                    if not self._stopping:
                        self._reconcile()
            except Exception:  # the loop must outlive any one bad round
                log.exception("fleet watch round failed")
            time.sleep(POLL_SECONDS)

    def _poll(self) -> None:
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots.values())
        slots = [s for s in slots if not s.draining]
        for slot in slots:
            if slot.poll is None:
                slot.poll, slot.polled = slot.handle.info.remote(), now
        if not slots:
            return
        ready, _ = ray.wait([s.poll for s in slots], num_returns=len(slots), timeout=_ANSWER_SECONDS)
        ready_set = set(ready)
        alive = cpu_nodes()
        for slot in slots:
            if slot.poll in ready_set:
                ref, slot.poll = slot.poll, None
                try:
                    slot.info = ray.get(ref)
                    slot.serving = bool(slot.info["serving"]) and not (slot.draining or self._stopping)
                except ray.exceptions.ActorDiedError:  # gone for good (killed, or its node gone)
                    self._forget(slot)
                except ray.exceptions.RayError:  # restarting, or its __init__ failed: Ray starts it again
                    slot.serving = False
            elif time.monotonic() - slot.polled > _ANSWER_SECONDS:
                slot.serving = False  # a restart, a dead node, a stuck process: not an endpoint now
            if slot.node_id is not None and slot.node_id not in alive:
                self._forget(slot)

    def _forget(self, slot: Slot) -> None:
        slot.serving = False
        with self._lock:
            self._slots.pop(slot.key, None)
        ray.kill(slot.handle, no_restart=True)

    def _reconcile(self) -> None:
        spec = self._spec
        if spec is None:
            return
        current = [s for s in self._slots.values() if not s.retiring]
        if len(current) < self._target:
            for node_id in self._places(spec, self._target - len(current), current):
                self._start(spec, node_id)
        elif len(current) > self._target:
            surplus = sorted(current, key=lambda s: (s.serving, s.key))[: len(current) - self._target]
            for slot in surplus:
                self._retire(slot)
        serving = sum(s.serving for s in current)
        if serving >= self._target or time.monotonic() - self._since > _SWITCH_SECONDS:
            for slot in [s for s in self._slots.values() if s.retiring and not s.draining]:
                self._retire(slot)

    def _places(self, spec: ReplicaSpec, count: int, current: list[Slot]) -> list[str | None]:
        if not spec.per_node:
            return [None] * count
        taken = {s.node_id for s in current}
        return [node for node in sorted(cpu_nodes()) if node not in taken][:count]

    def _start(self, spec: ReplicaSpec, node_id: str | None) -> None:
        key = uuid.uuid4().hex[:8]
        strategy: Any = NodeAffinitySchedulingStrategy(node_id, soft=False) if node_id else "SPREAD"
        handle = _REPLICA.options(
            name=self._prefix() + key,
            namespace=RAY_NAMESPACE,
            lifetime="detached",
            max_restarts=-1,
            max_concurrency=4,  # info polls while a drain runs
            num_cpus=spec.cpus_per_replica,
            scheduling_strategy=strategy,
        ).remote(spec, node_id)
        self._slots[key] = Slot(key, handle, spec, node_id)
        log.info("replica %s placed on %s", key, node_id or "any node")

    def _retire(self, slot: Slot) -> None:
        """Out of the endpoints now; drained and removed in the background."""
        slot.retiring, slot.draining, slot.serving = True, True, False
        grace = slot.spec.config.drain_seconds

        def drain() -> None:
            try:
                ray.get(slot.handle.drain.remote(grace), timeout=grace + 60)
            except (ray.exceptions.RayError, TimeoutError) as exc:
                log.warning("replica %s did not drain: %s", slot.key, exc)
            self._forget(slot)

        threading.Thread(target=drain, name=f"drain-{slot.key}", daemon=True).start()


def cpu_nodes() -> set[str]:
    """Alive nodes that have CPUs (a head node started with none is left to the trainer)."""
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0}
