"""run_lanes: the first failure ends the lanes, the most telling error wins, a cancel wins."""

from __future__ import annotations

import asyncio

import pytest

from transfer.exceptions import ItemFailed, LeaseLost, Transient
from transfer.lanes import run_lanes


async def fail_after(delay: float, error: Exception) -> None:
    await asyncio.sleep(delay)
    raise error


async def test_the_first_failure_cancels_the_other_lanes() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(Transient):
        await run_lanes([slow(), fail_after(0, Transient("target: 503"))])
    assert cancelled.is_set()


async def test_of_failures_together_the_most_telling_is_raised() -> None:
    with pytest.raises(LeaseLost):
        await run_lanes(
            [
                fail_after(0, Transient("target: 503")),
                fail_after(0, ItemFailed("source: gone")),
                fail_after(0, LeaseLost("taken over")),
            ]
        )


async def test_a_failure_leaves_no_cancel_request_on_the_caller() -> None:
    # Python 3.11's TaskGroup counts one on the caller when a task fails in its __aexit__;
    # left there it would turn a later timeout of this task into a cancellation.
    with pytest.raises(Transient):
        await run_lanes([fail_after(0.01, Transient("reset"))])
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await asyncio.sleep(1)


async def test_a_cancel_of_the_caller_wins_over_lanes_failing_as_they_stop() -> None:
    async def fails_when_cancelled() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise Transient("connection reset while stopping") from None

    caller = asyncio.create_task(run_lanes([fails_when_cancelled(), asyncio.sleep(10)]))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_lanes_that_all_finish() -> None:
    done: list[int] = []

    async def lane(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    await run_lanes([lane(n) for n in range(3)])
    assert sorted(done) == [0, 1, 2]
