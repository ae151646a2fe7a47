"""Bandwidth caps: a token bucket that streamed bodies draw from, with clock and sleep injected
(as s3transfer's LeakyBucket).

The gateway keeps one per credential (its `max_bytes_per_second`), the copy engine one per
job (its bandwidth limit). With one process the bucket lives in memory. With `ferry serve
--processes N` one credential's downloads may be served by any of the processes, so the
bucket lives in a small file every process maps (`SharedTokenBucket`), updated under an
exclusive lock: the cap holds for the machine, not once per process.
"""

from __future__ import annotations

import asyncio
import fcntl
import mmap
import os
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path


def _after(rate: int, tokens: float, elapsed: float, n: int) -> float:
    """Tokens after `elapsed` seconds of refill (up to one second's worth) and taking `n`."""
    return min(float(rate), tokens + elapsed * rate) - n


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
        self._tokens = _after(self.rate, self._tokens, now - self._stamp, n)
        self._stamp = now
        if self._tokens < 0:
            # Going into debt and sleeping it off keeps chunks whole and the average exact.
            await self._sleep(-self._tokens / self.rate)


_STATE = struct.Struct("dd")  # tokens, when they were counted (CLOCK_MONOTONIC: machine-wide)


class SharedTokenBucket:
    """TokenBucket's arithmetic on a state shared through `path` by every process."""

    def __init__(
        self,
        path: Path,
        rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._locked():
            if os.fstat(self._fd).st_size < _STATE.size:
                os.ftruncate(self._fd, _STATE.size)
                os.pwrite(self._fd, _STATE.pack(float(rate), clock()), 0)
        self._state = mmap.mmap(self._fd, _STATE.size)

    def _locked(self) -> _Flock:
        return _Flock(self._fd)

    async def take(self, n: int) -> None:
        # The lock is held for a few microseconds, never across an await.
        with self._locked():
            tokens, stamp = _STATE.unpack(self._state[: _STATE.size])
            now = self._clock()
            tokens = _after(self.rate, tokens, max(0.0, now - stamp), n)
            self._state[: _STATE.size] = _STATE.pack(tokens, now)
        if tokens < 0:
            await self._sleep(-tokens / self.rate)

    def close(self) -> None:
        self._state.close()
        os.close(self._fd)


class _Flock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
