"""A per-credential bandwidth cap: a token bucket each response draws from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Allows `rate` bytes a second on average, in bursts of up to one second's worth."""

    def __init__(
        self,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(rate)
        self._stamp = clock()

    async def take(self, n: int) -> None:
        now = self._clock()
        self._tokens = min(float(self.rate), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= n
        if self._tokens < 0:
            # Going into debt and sleeping it off keeps chunks whole and the average exact.
            await self._sleep(-self._tokens / self.rate)
