"""What the service lends a language: its settings, its isolation, its audit trail."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sandbox.audit import AuditLog
from sandbox.backends.base import Backend
from sandbox.config import ServiceConfig
from sandbox.lanes import PoolLane
from sandbox.pool import WorkerPool


@dataclass(frozen=True)
class Host:
    config: ServiceConfig
    backend: Backend  # the service's isolation, as its main pool uses it
    audit: AuditLog

    def lazy_pool(self, name: str, workers: int, backend: Callable[[], Backend]) -> PoolLane:
        """A pool lane started on its first job, admitting by the service's queue limits;
        `backend` derives its isolation from the service's (see `PoolLane`)."""
        config = self.config

        def make() -> WorkerPool:
            return WorkerPool(
                backend(),
                workers,
                retries=1,
                queue_limit=config.queue_limit,
                caller_queue_limit=config.caller_queue_limit or None,
            )

        return PoolLane(name, make, lazy=True)
