"""One replica: an actor that runs a `SandboxServer` on its node and says how it is doing.

The actor holds an `EmbeddedServer` (the server on its own loop thread) bound to the node's
IP on a free port; clients connect to that port directly, Ray carries no request. When
the actor's process dies Ray starts it again (`max_restarts=-1`), `__init__` runs again and
the server comes up on a new port: the controller reads the new address from `info`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import ray

from sandbox.backends.select import make_backend
from sandbox.embedded import EmbeddedServer
from sandbox.fleet.spec import ReplicaSpec
from sandbox.languages import standard_languages_with


def node_cpus() -> int:
    """The CPUs Ray was told this node has (what a node's share is), else the machine's."""
    node_id = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node["NodeID"] == node_id:
            return max(int(node["Resources"].get("CPU", 0)), 1)
    return os.cpu_count() or 1


class Replica:
    def __init__(self, spec: ReplicaSpec, node_id: str | None) -> None:
        self._placement = (spec, node_id)
        workers = spec.workers or spec.cpus_per_replica or node_cpus()
        config = dataclasses.replace(spec.config, host=ray.util.get_node_ip_address(), port=0, workers=workers)
        backend = make_backend(spec.backend, image=spec.docker_image, runtime=spec.docker_runtime)
        cache = Path(spec.variants_cache).expanduser() if spec.variants_cache else None
        languages = standard_languages_with(list(spec.databases), cache)
        self._embedded = EmbeddedServer(config, backend, languages).start()
        self._draining = False

    def info(self) -> dict[str, Any]:
        server = self._embedded.server
        stats = server.pool.stats
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "address": self._embedded.target,
            "metrics": f"{server.config.host}:{server.metrics.port}" if server.metrics is not None else None,
            "pid": os.getpid(),
            "serving": not self._draining and server.pool.live_workers > 0,
            "workers": server.pool.size,
            "busy": stats.busy,
            "queued": server.pool.queued,
            "jobs": stats.jobs_completed,
        }

    def placement(self) -> tuple[ReplicaSpec, str | None]:
        """What it was started with: a restarted controller adopts it with these."""
        return self._placement

    def drain(self, grace: float) -> None:
        """NOT_SERVING and new calls refused at once; accepted tasks finish (up to `grace`),
        then the server stops; the controller then removes the actor."""
        self._draining = True
        self._embedded.call(self._embedded.server.drain(grace), timeout=grace + 30)
