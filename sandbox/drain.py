"""The service's door during a drain: calls in flight counted, new ones refused.

A fleet member that is going away (SIGTERM, `ray down`, a pod terminated) must not take
new work, so its clients fail over at once, and must answer every task it already took.
`SandboxServer.drain` closes the gate and waits for the calls it let in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

DRAINING = "draining: this server is shutting down; send the request to another endpoint"
STOPPED = "the service stopped before this task finished (it ran past the drain's grace period)"


class Gate:
    def __init__(self) -> None:
        self.refusal: str | None = None  # set: new calls are refused with it (UNAVAILABLE)
        self._calls = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def close(self, refusal: str = DRAINING) -> None:
        self.refusal = refusal

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """One accepted call, from its first byte to its last result."""
        self._calls += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._calls -= 1
            if not self._calls:
                self._idle.set()

    @property
    def calls(self) -> int:
        return self._calls

    async def idle(self, timeout: float) -> bool:
        """Whether every accepted call ended within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
