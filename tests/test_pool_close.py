"""Closing a pool ends every slot, even one that swallowed a cancellation.

Python 3.11's `asyncio.wait_for` can swallow a cancellation that arrives just as what it
awaits finishes (gh-86296): a slot replacing its worker at that moment went back to wait
for its next job, and a stop that cancelled each slot once waited forever (seen as a
server stop timing out in CI). The test makes a slot swallow one cancellation, on purpose.
"""

from __future__ import annotations

import asyncio

from sandbox.backends.bwrap import BwrapBackend
from sandbox.backends.policy import policy_for
from sandbox.config import ServiceConfig
from sandbox.pool import WorkerPool


def test_close_ends_a_slot_that_swallowed_one_cancellation() -> None:
    async def run() -> int:
        backend = BwrapBackend()
        backend.check()
        pool = WorkerPool(backend, policy_for(ServiceConfig()), 1)
        await pool.start()
        original, swallowed = pool._queue.get, 0

        async def stubborn_get() -> object:
            nonlocal swallowed
            try:
                return await original()
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as wait_for does when its inner await finished with the cancel
                return await original()

        pool._queue.get = stubborn_get  # type: ignore[method-assign]
        pool._slots[0].cancel()  # the slot is waiting in the stubborn get: re-enter it
        pool._slots = [asyncio.create_task(pool._serve(0))]
        await asyncio.sleep(0.05)
        await asyncio.wait_for(pool.close(), 15)
        return swallowed

    assert asyncio.run(run()) == 1, "the slot swallowed one cancellation and the close still ended"
