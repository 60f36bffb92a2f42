"""What every replica of a fleet runs: picklable, so the controller keeps it and hands it on."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.config import ServiceConfig


@dataclass(frozen=True)
class ReplicaSpec:
    """`config.host`/`config.port` are replaced on each node (its IP, a free port).
    `workers`: warm sandboxes per replica; 0 = its share of CPUs (`cpus_per_replica`, or the
    node's CPUs when there is one replica per node)."""

    config: ServiceConfig
    backend: str = "auto"
    docker_image: str | None = None
    docker_runtime: str | None = None
    databases: tuple[str, ...] = ()
    variants_cache: str | None = None
    cpus_per_replica: int = 0  # 0: one replica per node, sharing the node's CPUs (reserves none)
    workers: int = 0

    @property
    def per_node(self) -> bool:
        return self.cpus_per_replica == 0
