"""The one retry policy: exponential backoff with full jitter, for every S3 call Ferry makes.

The `s3` backend retries with it what can be sent again (requests without a streamed body);
the copy engine retries whole steps with it (read a part, send it, check the answer). What is
worth another try is the caller's `retryable`; `exhausted` may turn the last error into the
one the caller should see.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class RetryPolicy:
    """`attempts` tries in all; waits base·2^n, capped, times a uniform random factor
    (full jitter, so parallel callers do not retry in step)."""

    def __init__(
        self,
        *,
        attempts: int,
        base: float,
        cap: float = math.inf,
        retryable: Callable[[Exception], bool],
        exhausted: Callable[[Exception, str, int], Exception] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self._retryable = retryable
        self._exhausted = exhausted
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0  # how many times any call waited and tried again (for reports)

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.cap, self.base * 2**attempt))

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, fails for good, or the attempts run out."""
        for attempt in range(self.attempts):
            try:
                return await operation()
            except Exception as exc:
                if not self._retryable(exc):
                    raise
                if attempt + 1 == self.attempts:
                    if self._exhausted is not None:
                        raise self._exhausted(exc, what, self.attempts) from exc
                    raise
            self.retries += 1
            await self._sleep(self.delay(attempt))
        raise AssertionError("unreachable")
