"""The copy engine's memory limit (its bandwidth limit is storage.throttle.TokenBucket)."""

from __future__ import annotations

import asyncio

# Buffers this large are kept for reuse: a fresh one costs a page fault per 4 KiB on first
# touch (about 18 ms for a 16 MiB part here, a tenth of the CPU of copying a big object).
POOLED_MIN = 1024 * 1024


class MemoryBudget:
    """A byte-counting semaphore: part buffers are taken from it before they are filled.

    A request larger than the whole budget is granted when nothing else is held, so a part
    grown past the limit (a 5 TiB object needs 525 MiB parts) still goes through, alone.

    It also keeps finished part buffers for the next part of the same size; kept ones give
    way when a part of another size needs room, so kept and used buffers stay in the limit.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.in_use = 0
        self.peak = 0
        self._changed = asyncio.Condition()
        self._kept: dict[int, list[bytearray]] = {}
        self._kept_bytes = 0

    def buffer(self, size: int) -> bytearray:
        """A buffer of `size` bytes, for a caller that holds budget for it. A kept one holds
        an earlier part's bytes: the caller must fill every byte before using it."""
        kept = self._kept.get(size)
        if kept:
            self._kept_bytes -= size
            return kept.pop()
        # Buffers kept for another part size give way, so kept and used ones fit the limit.
        while self._kept and self._kept_bytes + self.in_use > self.limit:
            other = next(iter(self._kept))
            self._kept_bytes -= len(self._kept[other].pop())
            if not self._kept[other]:
                del self._kept[other]
        return bytearray(size)

    def recycle(self, buffer: bytearray) -> None:
        """Keep a buffer its holder is done with (call before releasing its budget)."""
        size = len(buffer)
        if size >= POOLED_MIN and self._kept_bytes + size <= self.limit:
            self._kept.setdefault(size, []).append(buffer)
            self._kept_bytes += size

    async def acquire(self, amount: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.in_use == 0 or self.in_use + amount <= self.limit
            )
            self.in_use += amount
            self.peak = max(self.peak, self.in_use)

    async def release(self, amount: int) -> None:
        async with self._changed:
            self.in_use -= amount
            self._changed.notify_all()
