"""Bandwidth, memory and retries with an exact clock: no real sleeping."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest

from storage import exceptions as storage_errors
from storage.retry import RetryPolicy
from storage.throttle import TokenBucket
from transfer.exceptions import (
    AccessDenied,
    Corrupted,
    SourceChanged,
    Transient,
    UploadGone,
    VerificationFailed,
)
from transfer.retry import engine_policy, translate
from transfer.throttle import MemoryBudget


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_token_bucket_holds_the_average_rate() -> None:
    time = FakeTime()
    bucket = TokenBucket(1000, clock=time.clock, sleep=time.sleep)
    for _ in range(10):
        await bucket.take(500)  # 5,000 bytes at 1,000 B/s, with a 1,000-byte burst
    assert time.now == pytest.approx(4.0)


async def test_token_bucket_refills_while_idle() -> None:
    time = FakeTime()
    bucket = TokenBucket(1000, clock=time.clock, sleep=time.sleep)
    await bucket.take(1000)
    time.now += 10  # idle: the burst comes back, but no more than one second's worth
    await bucket.take(1000)
    assert time.slept == []
    await bucket.take(1000)
    assert time.slept == [pytest.approx(1.0)]


async def test_memory_budget_waits_for_room_and_lets_an_oversized_part_through_alone() -> None:
    budget = MemoryBudget(100)
    await budget.acquire(60)
    waiter = asyncio.create_task(budget.acquire(60))
    await asyncio.sleep(0)
    assert not waiter.done()
    await budget.release(60)
    await waiter
    assert budget.in_use == 60
    await budget.release(60)
    await budget.acquire(250)  # larger than the budget: granted when nothing else is held
    assert budget.peak == 250


async def test_part_buffers_are_kept_for_reuse_within_the_budget() -> None:
    MiB = 1024 * 1024
    budget = MemoryBudget(4 * MiB)
    await budget.acquire(4 * MiB)
    first, second = budget.buffer(2 * MiB), budget.buffer(2 * MiB)
    budget.recycle(first)
    budget.recycle(second)
    budget.recycle(bytearray(2 * MiB))  # a third would pass the limit: dropped
    await budget.release(4 * MiB)

    await budget.acquire(2 * MiB)
    assert budget.buffer(2 * MiB) is second
    assert budget.buffer(2 * MiB) is first
    await budget.release(2 * MiB)
    budget.recycle(first)
    budget.recycle(bytearray(512 * 1024))  # too small to be worth keeping

    # A part of another size: the kept 2 MiB buffer gives way (kept + in use <= limit).
    await budget.acquire(3 * MiB)
    assert len(budget.buffer(3 * MiB)) == 3 * MiB
    await budget.acquire(1)
    assert budget.buffer(2 * MiB) is not first
    assert len(budget.buffer(512 * 1024)) == 512 * 1024


def policy(time: FakeTime, attempts: int = 4) -> RetryPolicy:
    return engine_policy(
        attempts=attempts, base=0.5, cap=3.0, sleep=time.sleep, rng=random.Random(1)
    )


async def test_transient_failures_are_retried_with_growing_jittered_waits() -> None:
    time = FakeTime()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise Transient("503 SlowDown")
        return "ok"

    retry = policy(time)
    assert await retry.call("op", flaky) == "ok"
    assert calls == 4 and retry.retries == 3
    caps = [0.5, 1.0, 2.0]
    assert all(0 <= slept <= cap for slept, cap in zip(time.slept, caps, strict=True))


async def test_retries_run_out_and_corruption_becomes_a_verification_failure() -> None:
    time = FakeTime()

    async def always_transient() -> None:
        raise Transient("reset")

    async def always_corrupt() -> None:
        raise Corrupted("BadDigest")

    with pytest.raises(Transient):
        await policy(time, 3).call("op", always_transient)
    with pytest.raises(VerificationFailed, match="3 attempts"):
        await policy(time, 3).call("op", always_corrupt)


async def test_access_denied_is_not_retried() -> None:
    time = FakeTime()
    calls = 0

    async def denied() -> None:
        nonlocal calls
        calls += 1
        raise AccessDenied("403")

    with pytest.raises(AccessDenied):
        await policy(time).call("op", denied)
    assert calls == 1 and time.slept == []


@pytest.mark.parametrize(
    ("error", "side", "expected"),
    [
        (storage_errors.BackendUnavailable("503"), "source", Transient),
        (aiohttp.ServerDisconnectedError(), "target", Transient),
        (TimeoutError(), "source", Transient),
        (storage_errors.NoSuchKey("gone"), "source", SourceChanged),
        (storage_errors.NoSuchUpload("gone"), "target", UploadGone),
        (
            storage_errors.BackendError("no", status=403, code="AccessDenied"),
            "target",
            AccessDenied,
        ),
        (
            storage_errors.BackendError("sig", status=403, code="SignatureDoesNotMatch"),
            "source",
            AccessDenied,
        ),
        (storage_errors.BackendError("bad", status=400, code="BadDigest"), "target", Corrupted),
    ],
)
def test_foreign_errors_are_translated(error: Exception, side: str, expected: type) -> None:
    assert isinstance(translate(error, side), expected)
