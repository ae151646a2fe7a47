"""Workers racing for exports: one claim statement, one lease, on SQLite and PostgreSQL.

Each worker has its own engine (its own connections), as separate processes would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from db import migrate
from db.engine import create_engine, session_factory
from db.leases import Leaseholder
from db.models import ExportJob, PortabilityRequest, User
from portability.exports.exceptions import ExportCancelled
from portability.exports.queue import ExportQueue
from portability.requests import PENDING, PROCESSING, new_request

LEASE = 30.0
WORKERS = 6


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
        return
    sqlite = f"sqlite+aiosqlite:///{tmp_path}/ferry.db"
    migrate.upgrade(sqlite)
    yield sqlite


@pytest.fixture
async def engines(url: str) -> AsyncIterator[list[AsyncEngine]]:
    engines = [create_engine(url) for _ in range(WORKERS)]
    try:
        yield engines
        # The PostgreSQL database is the module's: no export is left for the next test.
        async with session_factory(engines[0]).begin() as session:
            await session.execute(sa.update(PortabilityRequest).values(status="completed"))
    finally:
        for engine in engines:
            await engine.dispose()


def _queues(engines: list[AsyncEngine], clock: Clock) -> list[ExportQueue]:
    return [
        ExportQueue(session_factory(engine), Leaseholder(f"w{n}", LEASE, clock=clock))
        for n, engine in enumerate(engines)
    ]


async def _new_export(engine: AsyncEngine, clock: Clock) -> uuid.UUID:
    async with session_factory(engine).begin() as session:
        user = User(id=uuid.uuid4(), email=f"{uuid.uuid4().hex[:12]}@example.com")
        session.add(user)
        await session.flush()
        request = new_request(
            user.id, request_type="export", format="json", options={}, now=clock()
        )
        session.add(request)
    return request.id


async def _row(engine: AsyncEngine, request_id: uuid.UUID) -> PortabilityRequest:
    async with session_factory(engine)() as session:
        row = await session.get(PortabilityRequest, request_id)
    assert row is not None
    return row


async def _lease(engine: AsyncEngine, request_id: uuid.UUID) -> tuple[str | None, datetime | None]:
    async with session_factory(engine)() as session:
        job = await session.get(ExportJob, request_id)
    assert job is not None
    return job.lease_owner, job.lease_expires_at


async def test_one_of_many_racing_workers_claims_an_export(engines: list[AsyncEngine]) -> None:
    clock = Clock()
    queues = _queues(engines, clock)
    request_id = await _new_export(engines[0], clock)

    claimed = await asyncio.gather(*(q.claim() for q in queues))

    winners = [q.leases.owner for q, got in zip(queues, claimed, strict=True) if got]
    assert len(winners) == 1 and claimed.count(request_id) == 1
    row = await _row(engines[0], request_id)
    assert row.status == PROCESSING and row.meta is not None and row.meta["attempts"] == 1
    assert await _lease(engines[0], request_id) == (
        winners[0],
        clock.now + timedelta(seconds=LEASE),
    )
    # Held and alive: nobody else takes it.
    assert await asyncio.gather(*(q.claim() for q in queues)) == [None] * WORKERS


async def test_an_expired_lease_is_claimed_again_and_the_old_holder_is_out(
    engines: list[AsyncEngine],
) -> None:
    clock = Clock()
    first, *others = _queues(engines, clock)
    request_id = await _new_export(engines[0], clock)
    assert await first.claim() == request_id

    clock.now += timedelta(seconds=LEASE + 1)  # `first` stopped beating: it crashed
    claimed = await asyncio.gather(*(q.claim() for q in others))

    assert claimed.count(request_id) == 1 and claimed.count(None) == len(others) - 1
    row = await _row(engines[0], request_id)
    assert row.status == PROCESSING and row.meta is not None and row.meta["attempts"] == 2
    owner, _ = await _lease(engines[0], request_id)
    assert owner not in (None, first.leases.owner)
    with pytest.raises(ExportCancelled):
        async with session_factory(engines[0]).begin() as session:
            await first.owned(session, request_id)


async def test_a_heartbeat_keeps_the_export(engines: list[AsyncEngine]) -> None:
    clock = Clock()
    holder, *others = _queues(engines, clock)
    request_id = await _new_export(engines[0], clock)
    assert await holder.claim() == request_id
    for _ in range(3):  # three beats, each before the lease would run out
        clock.now += timedelta(seconds=LEASE * 0.8)
        async with session_factory(engines[0]).begin() as session:
            await holder.owned(session, request_id)  # the heartbeat renews the lease
        assert await asyncio.gather(*(q.claim() for q in others)) == [None] * len(others)
    assert await _lease(engines[0], request_id) == (
        holder.leases.owner,
        clock.now + timedelta(seconds=LEASE),
    )


async def test_a_cancelled_export_is_no_longer_held(engines: list[AsyncEngine]) -> None:
    clock = Clock()
    holder, other, *_ = _queues(engines, clock)
    request_id = await _new_export(engines[0], clock)
    assert await holder.claim() == request_id
    async with session_factory(engines[1]).begin() as session:
        row = await session.get(PortabilityRequest, request_id)
        assert row is not None
        row.status = "cancelled"
    with pytest.raises(ExportCancelled):
        async with session_factory(engines[0]).begin() as session:
            await holder.owned(session, request_id)
    clock.now += timedelta(seconds=LEASE + 1)
    assert await other.claim() is None  # cancelled is not work, whatever its lease


async def test_exports_are_claimed_oldest_first(engines: list[AsyncEngine]) -> None:
    clock = Clock()
    queue = _queues(engines, clock)[0]
    older = await _new_export(engines[0], clock)
    clock.now += timedelta(seconds=1)
    newer = await _new_export(engines[0], clock)
    assert [await queue.claim(), await queue.claim(), await queue.claim()] == [older, newer, None]
    assert (await _row(engines[0], newer)).status == PROCESSING
    assert PENDING not in {(await _row(engines[0], r)).status for r in (older, newer)}
