"""What the service lends a language: its settings, its isolation, its audit trail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.audit import AuditLog
from sandbox.backends.base import Backend
from sandbox.backends.policy import SandboxPolicy
from sandbox.config import ServiceConfig
from sandbox.lanes import PoolLane
from sandbox.pool import WorkerPool


@dataclass(frozen=True)
class Host:
    config: ServiceConfig
    backend: Backend  # the service's isolation engine
    policy: SandboxPolicy  # what the main pool's sandboxes are
    audit: AuditLog

    def lazy_pool(self, name: str, workers: int, policy: Callable[[], SandboxPolicy]) -> PoolLane:
        """A pool lane started on its first job, admitting by the service's queue limits;
        `policy` derives its sandboxes from the service's (see `PoolLane`)."""
        config, backend = self.config, self.backend

        def make() -> WorkerPool:
            return WorkerPool(
                backend,
                policy(),
                workers,
                retries=1,
                queue_limit=config.queue_limit,
                caller_queue_limit=config.caller_queue_limit or None,
            )

        return PoolLane(name, make, lazy=True)
