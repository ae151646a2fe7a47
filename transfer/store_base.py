"""Shared by the job-level and item-level halves of the store (store_jobs.py, store.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import TransferJob


class StoreBase:
    """Sessions, the worker's identity and lease length, and the write transaction."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        owner: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._sessions = sessions
        self.owner = owner
        self._lease = timedelta(seconds=lease_seconds)
        self._clock = clock
        bind = sessions.kw.get("bind")
        self._serialise = bind is not None and bind.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. On SQLite this process's writers take turns: the file has
        one writer at a time anyway, and waiting for a lock here is much cheaper than
        SQLite's busy handler, which sleeps in steps of milliseconds."""
        if self._serialise:
            async with self._write_lock, self._sessions.begin() as session:
                yield session
        else:
            async with self._sessions.begin() as session:
                yield session

    async def _count(self, session: AsyncSession, request_id: uuid.UUID, **deltas: int) -> None:
        deltas = {name: value for name, value in deltas.items() if value}
        if not deltas:
            return
        job = TransferJob
        await session.execute(
            sa.update(job)
            .where(job.request_id == request_id)
            .values(
                {getattr(job, name): getattr(job, name) + value for name, value in deltas.items()}
            )
        )
