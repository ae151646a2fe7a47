"""Finished items recorded in batches: one transaction for many small objects.

One transaction per finished object made the database the bottleneck for small objects
(on SQLite every commit also waits for this process's other writers). Items copied and
verified without a multipart upload (single PUTs, server-side CopyObject, skips) are
queued here and written together when the batch is full, when its oldest entry has waited
`max_age` seconds, or when the job's loop runs out of work.

Until it is flushed a queued item stays `copying` under this worker's lease, which the
heartbeat keeps renewing (`ids()`): no other worker takes it, and after a crash it is
copied again once the lease runs out. That is safe because a single PUT or CopyObject
overwrites the same key with the same verified bytes. An item whose lease was lost before
the flush is left to whoever holds it now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from transfer.store import Finished, Item, ItemRows

log = logging.getLogger(__name__)


class FinishedBatch:
    """Queues finished items of one job in one worker and records them in batches."""

    def __init__(
        self,
        store: ItemRows,
        *,
        max_items: int = 64,
        max_age: float = 0.5,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items <= 0 or max_age < 0:
            raise ValueError("max_items must be positive and max_age not negative")
        self._store = store
        self._max_items = max_items
        self._max_age = max_age
        self._monotonic = monotonic
        self._queued: list[Finished] = []
        self._oldest = 0.0
        self._lock = asyncio.Lock()

    def add(self, item: Item, *, state: str, verified: str, target_etag: str) -> None:
        if not self._queued:
            self._oldest = self._monotonic()
        self._queued.append(Finished(item, state, verified, target_etag))

    def ids(self) -> list[int]:
        """The queued items, whose leases must be renewed until they are recorded."""
        return [f.item.id for f in self._queued]

    def due(self) -> bool:
        return bool(self._queued) and (
            len(self._queued) >= self._max_items
            or self._monotonic() - self._oldest >= self._max_age
        )

    async def flush(self) -> None:
        """Record everything queued; on a database error the items stay queued."""
        async with self._lock:
            if not self._queued:
                return
            batch = self._queued
            self._queued = []
            try:
                lost = await self._store.record_finished(batch)
            except BaseException:
                self._queued = batch + self._queued
                raise
            for item in lost:
                log.warning("lost the lease on %r before it was recorded", item.key)
