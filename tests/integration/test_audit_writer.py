"""The gateway's audit writer on a real database: what a flush takes, and nothing lost."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditLog
from gateway.audit import AccessEvent, AuditWriter


def _event(key: str) -> AccessEvent:
    return AccessEvent(created_at=datetime.now(UTC), action="GetObject", status=200, key=key)


class _BusyGateway(AuditWriter):
    """Requests keep arriving while each batch is written, as they do on a busy gateway."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(sessions, batch=4)
        self.batches: list[int] = []
        self.busy = True

    async def _write(self, events: list[AccessEvent]) -> None:
        self.batches.append(len(events))
        for n in range(3 if self.busy and len(self.batches) <= 3 else 0):
            self.record(_event(f"during-{len(self.batches)}-{n}"))
        await super()._write(events)


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


async def test_a_flush_writes_what_was_queued_when_it_began(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    writer = _BusyGateway(db_sessions)
    writer._task = object()  # type: ignore[assignment]  # no background rounds: flush by hand
    for n in range(10):
        writer.record(_event(f"before-{n}"))
    before = await _rows(db_sessions)

    await writer.flush()

    # The ten queued rows in batches of at most four; the rows that arrived meanwhile wait
    # for the next round instead of each being chased with a batch of its own.
    assert writer.batches == [4, 4, 2]
    assert await _rows(db_sessions) == before + 10
    assert writer._queue.qsize() == 9

    writer._task, writer.busy = None, False
    await writer.close()  # the graceful stop writes every row still queued
    assert writer._queue.empty()
    assert await _rows(db_sessions) == before + 19
