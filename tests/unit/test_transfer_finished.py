"""FinishedBatch: when it flushes, and that nothing is lost when the database refuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from transfer.finished import FinishedBatch


@dataclass
class FakeItem:
    id: int
    key: str


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.fail = False
        self.lost: list[FakeItem] = []

    async def record_finished(self, batch: list[Any]) -> list[FakeItem]:
        if self.fail:
            raise ConnectionError("database went away")
        self.batches.append(batch)
        return self.lost


def batch_with(store: FakeStore, now: list[float], **kw: Any) -> FinishedBatch:
    return FinishedBatch(store, monotonic=lambda: now[0], **kw)  # type: ignore[arg-type]


async def test_due_by_count_and_by_age() -> None:
    store, now = FakeStore(), [0.0]
    batch = batch_with(store, now, max_items=3, max_age=0.5)
    assert not batch.due()
    for i in range(2):
        batch.add(FakeItem(i, f"k{i}"), state="done", verified="md5", target_etag="e")  # type: ignore[arg-type]
    assert not batch.due()
    now[0] = 0.5
    assert batch.due()  # the oldest has waited long enough
    now[0] = 0.1
    batch.add(FakeItem(2, "k2"), state="done", verified="md5", target_etag="e")  # type: ignore[arg-type]
    assert batch.due()  # full
    assert batch.ids() == [0, 1, 2]
    await batch.flush()
    assert [f.item.id for f in store.batches[0]] == [0, 1, 2]
    assert batch.ids() == [] and not batch.due()


async def test_a_failed_write_keeps_the_items_queued() -> None:
    store, now = FakeStore(), [0.0]
    batch = batch_with(store, now)
    batch.add(FakeItem(7, "k"), state="done", verified="md5", target_etag="e")  # type: ignore[arg-type]
    store.fail = True
    with pytest.raises(ConnectionError):
        await batch.flush()
    assert batch.ids() == [7]  # still leased and renewed by the heartbeat
    store.fail = False
    await batch.flush()
    assert batch.ids() == [] and len(store.batches) == 1


async def test_lost_leases_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    store, now = FakeStore(), [0.0]
    batch = batch_with(store, now)
    item = FakeItem(1, "taken-over")
    store.lost = [item]
    batch.add(item, state="done", verified="md5", target_etag="e")  # type: ignore[arg-type]
    await batch.flush()
    assert "taken-over" in caplog.text


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        FinishedBatch(FakeStore(), max_items=0)  # type: ignore[arg-type]
