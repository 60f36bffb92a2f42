"""Results that many tasks share, computed once: a gold query's rows, a reference's outputs.

Concurrent askers of one key share one computation (the first asker's), and what it
produced is kept: sized values in least-recently-used order within a byte budget,
unsized ones for the life of the service. A computation that raised is not kept, so
the next request tries again; its waiters get the same exception.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class MemoStore:
    def __init__(self, budget_bytes: int = 512 << 20) -> None:
        self.budget_bytes = budget_bytes
        self._values: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._sized_bytes = 0
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]], size: Callable[[T], int] | None) -> T:
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key][0]  # type: ignore[no-any-return]
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running)  # type: ignore[no-any-return]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters re-raise it; nobody else must log it
            raise
        else:
            self._store(key, value, size(value) if size is not None else None)
            future.set_result(value)
            return value
        finally:
            del self._running[key]

    def _store(self, key: Hashable, value: Any, size: int | None) -> None:
        if size is None:
            self._values[key] = (value, -1)
            return
        if size > self.budget_bytes:
            return
        self._values[key] = (value, size)
        self._sized_bytes += size
        for old in list(self._values):
            if self._sized_bytes <= self.budget_bytes:
                break
            if self._values[old][1] >= 0:
                self._sized_bytes -= self._values.pop(old)[1]
