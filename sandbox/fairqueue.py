"""The pool's queue: one FIFO per caller, served round-robin, with per-caller admission.

One shared FIFO let a caller's large batch of slow tasks delay everyone else's tasks by
the whole backlog, and fill the queue so that every other caller was refused. Here each
caller has its own line and the workers take one job from each caller with queued jobs
in turn, so a caller waits for at most about one job per other active caller; and when
the queue is full only a caller holding more than its fair share is refused.

Every operation is O(1) (amortised): jobs whose caller gave up (their future is done)
stop counting at once, through a done-callback, and are skipped when they come up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Overloaded(Exception):
    """The caller should back off (RESOURCE_EXHAUSTED): the message names the limit."""


class _Entry(Generic[T]):
    __slots__ = ("caller", "future", "item", "queued")

    def __init__(self, caller: str, item: T, future: asyncio.Future[object]) -> None:
        self.caller = caller
        self.item = item
        self.future = future
        self.queued = True  # counted in the queue: not yet taken, its caller still waiting


class FairQueue(Generic[T]):
    """Admission rules (`admit`), checked for a whole request before any of it is queued:

    * a caller never holds more than `caller_limit` queued jobs;
    * while the whole queue holds at most `limit` jobs, that is the only rule;
    * past `limit`, a caller is admitted only within its fair share, `limit` divided by
      the number of callers with queued jobs (itself included). So a caller that filled
      the queue is refused, and one that arrives later is not. The queue can then
      exceed `limit` by at most about one fair share per caller that arrived late.
    """

    def __init__(self, limit: int, caller_limit: int | None = None) -> None:
        self.limit = limit
        self.caller_limit = caller_limit or limit
        self._lines: dict[str, deque[_Entry[T]]] = {}  # callers with entries (live or not)
        self._ring: deque[str] = deque()  # the callers in _lines, in serving order
        self._counts: dict[str, int] = {}  # live queued jobs of each caller that has any
        self._total = 0
        self._getters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return self._total

    def depths(self) -> dict[str, int]:
        """Queued jobs of each caller that has any."""
        return dict(self._counts)

    def admit(self, caller: str, count: int) -> None:
        mine = self._counts.get(caller, 0)
        if self._total + count > self.limit:
            active = len(self._counts) + (caller not in self._counts)
            share = self.limit // active
            if mine + count > share:
                raise Overloaded(
                    f"the queue is full ({self._total} jobs, queue limit {self.limit}) and caller {caller!r} "
                    f"has {mine} queued; {count} more would exceed its fair share of {share} "
                    f"(queue limit / {active} callers with queued jobs)"
                )
        if mine + count > self.caller_limit:
            raise Overloaded(
                f"caller {caller!r} has {mine} jobs queued; {count} more would exceed "
                f"the per-caller queue limit of {self.caller_limit}"
            )

    def put(self, caller: str, item: T, future: asyncio.Future[object]) -> None:
        """Queue `item` until a getter takes it; it is dropped once `future` is done."""
        entry = _Entry(caller, item, future)
        line = self._lines.get(caller)
        if line is None:
            line = self._lines[caller] = deque()
            self._ring.append(caller)
        line.append(entry)
        self._counts[caller] = self._counts.get(caller, 0) + 1
        self._total += 1
        future.add_done_callback(lambda _: self._forget(entry))
        self._wake_one()

    def _forget(self, entry: _Entry[T]) -> None:
        """Stop counting an entry (taken, or its caller gave up); it may stay in its line."""
        if entry.queued:
            entry.queued = False
            left = self._counts[entry.caller] - 1
            if left:
                self._counts[entry.caller] = left
            else:
                del self._counts[entry.caller]
            self._total -= 1

    def _take(self) -> _Entry[T] | None:
        """The next live entry round-robin over callers, or None if there is none."""
        while self._ring:
            caller = self._ring.popleft()
            line = self._lines[caller]
            while line:
                entry = line.popleft()
                if entry.queued and not entry.future.done():
                    if line:
                        self._ring.append(caller)
                    else:
                        del self._lines[caller]
                    self._forget(entry)
                    return entry
                self._forget(entry)  # its future is done but the callback has not run yet
            del self._lines[caller]
        return None

    async def get(self) -> T:
        """The next job to run; waits while there is none."""
        while True:
            entry = self._take()
            if entry is not None:
                return entry.item
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                if getter.done() and not getter.cancelled() and self._total:
                    self._wake_one()  # it was woken for an entry it will not take: pass it on
                raise

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return
