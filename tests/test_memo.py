"""The service's memos: one computation per key however many ask, failures not kept,
sized values evicted least-recently-used within the budget, unsized ones kept."""

from __future__ import annotations

import asyncio

import pytest

from sandbox.memo import MemoStore


def test_concurrent_askers_share_one_computation() -> None:
    async def run() -> tuple[list[str], int]:
        memo, calls = MemoStore(), 0

        async def compute() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            return "gold rows"

        values = await asyncio.gather(*(memo.get("gold", compute, None) for _ in range(5)))
        await memo.get("gold", compute, None)  # kept
        return list(values), calls

    values, calls = asyncio.run(run())
    assert values == ["gold rows"] * 5 and calls == 1


def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    async def run() -> tuple[list[BaseException | str], str]:
        memo, attempts = MemoStore(), 0

        async def flaky() -> str:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.01)
            if attempts == 1:
                raise RuntimeError("the sandbox failed")
            return "reference"

        first = await asyncio.gather(*(memo.get("ref", flaky, None) for _ in range(3)), return_exceptions=True)
        return first, await memo.get("ref", flaky, None)

    first, again = asyncio.run(run())
    assert all(isinstance(e, RuntimeError) for e in first), first
    assert again == "reference", "the failed computation was not kept: the next asker computed it again"


def test_sized_values_are_evicted_least_recently_used_and_unsized_ones_kept() -> None:
    async def run() -> list[str]:
        memo, computed = MemoStore(budget_bytes=100), []

        def value(name: str) -> object:
            async def compute() -> str:
                computed.append(name)
                return name

            return compute

        size = len  # one byte per character
        await memo.get("unsized", value("u"), None)
        await memo.get("a", value("a" * 40), size)
        await memo.get("b", value("b" * 40), size)
        await memo.get("a", value("a" * 40), size)  # a used again: b is now the oldest sized value
        await memo.get("c", value("c" * 40), size)  # 120 > 100: b goes
        await memo.get("too-big", value("x" * 101), size)  # never kept
        for key, name in (("a", "a" * 40), ("c", "c" * 40), ("b", "b" * 40), ("unsized", "u"), ("too-big", "x" * 101)):
            await memo.get(key, value(name), size if key != "unsized" else None)
        return computed

    computed = asyncio.run(run())
    assert computed == ["u", "a" * 40, "b" * 40, "c" * 40, "x" * 101, "b" * 40, "x" * 101]


@pytest.mark.parametrize("budget", [0, 10])
def test_a_budget_too_small_keeps_nothing_sized(budget: int) -> None:
    async def run() -> int:
        memo, calls = MemoStore(budget_bytes=budget), 0

        async def compute() -> str:
            nonlocal calls
            calls += 1
            return "x" * 50

        await memo.get("k", compute, len)
        await memo.get("k", compute, len)
        return calls

    assert asyncio.run(run()) == 2
