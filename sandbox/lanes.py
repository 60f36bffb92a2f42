"""Lanes: where a flow's jobs run. The service's warm pool is one; a language may add its own.

A lane runs one `Job` for one caller and answers the runner's reply, or raises
`SandboxFailure` when the infrastructure failed. `PoolLane` is a pool of warm sandboxes
(`sandbox.pool`), started with the service or, for a heavy runner (torch and triton
imported: about a second and 300 MiB each), on its first job; a service that never sees
such a task never pays for it. Every lane admits a request's tasks against its own queue
before any of them is queued (`admit`), so no lane's queue is unbounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from sandbox.pool import Job as PoolJob
from sandbox.pool import SandboxFailure, WorkerPool
from sandbox.steps import Job
from sandbox.wire import framing
from sandbox.worker import RunnerReply

log = logging.getLogger(__name__)
_RUNNER_SLACK_SECONDS = 2.0  # the runner's own start and stop, past the task's budget


class Lane(Protocol):
    async def run(self, job: Job, caller: str) -> RunnerReply: ...

    def admit(self, caller: str, count: int) -> None:
        """Raise `Overloaded` if the caller may not queue `count` more jobs here."""

    async def start(self) -> None: ...

    def abandon(self, reason: str) -> None:
        """The service is stopping: answer every job waiting or running here with
        `SandboxFailure(reason)`, now, and any job sent later too."""

    async def close(self) -> None: ...


class PoolLane:
    """A warm pool behind a lane. `make` builds the pool (not started): a lazy lane calls it
    at the first request that needs it, so it learns only then whether it can run here
    (`make` raises `sandbox.steps.LanguageUnavailable` if not), and starts the pool
    with its first job."""

    def __init__(self, name: str, make: Callable[[], WorkerPool], *, lazy: bool = False) -> None:
        self.name = name
        self.lazy = lazy
        self._make = make
        self.pool: WorkerPool | None = None
        self._started = False
        self._starting = asyncio.Lock()

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = self._make()
        return self.pool

    async def start(self) -> None:
        if not self.lazy:
            await self._start()

    async def _start(self) -> WorkerPool:
        async with self._starting:
            pool = self._pool()
            if not self._started:
                try:
                    await pool.start()
                except Exception as exc:
                    await pool.close()
                    if not self.lazy:
                        raise
                    raise SandboxFailure(f"could not start the {self.name} sandboxes: {exc}") from None
                self._started = True
                if self.lazy:
                    log.info("sandboxes started", extra={"fields": {"lane": self.name, "workers": pool.size}})
            return pool

    def admit(self, caller: str, count: int) -> None:
        self._pool().admit(caller, count)

    async def run(self, job: Job, caller: str) -> RunnerReply:
        pool = self.pool if self._started and self.pool is not None else await self._start()
        timeout = job.task_ms / 1000 + _RUNNER_SLACK_SECONDS
        memory = job.frame.get("limits", {}).get("memory_bytes", 0)  # for the job's whole process tree
        return await pool.run(PoolJob(framing.pack(job.frame), framing.pack(job.secret), timeout, caller, memory))

    def abandon(self, reason: str) -> None:
        if self.pool is not None:
            self.pool.abandon(reason)

    async def close(self) -> None:
        pool, self.pool, self._started = self.pool, None, False
        if pool is not None:
            await pool.close()
