"""What the job rows and the item rows of the store share: one way into the database.

One short transaction per call, opened here (a session is never shared between tasks).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.leases import Leaseholder
from db.models import TransferJob


class Transactions:
    """One worker's sessions, its write transactions and the leases it holds."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], leases: Leaseholder) -> None:
        self._sessions = sessions
        self.leases = leases
        bind = sessions.kw.get("bind")
        self._serialise = bind is not None and bind.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()

    def read(self) -> AsyncSession:
        """A session to read with (`async with`)."""
        return self._sessions()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction. On SQLite this process's writers take turns: the file has
        one writer at a time anyway, and waiting for a lock here is much cheaper than
        SQLite's busy handler, which sleeps in steps of milliseconds."""
        if self._serialise:
            async with self._write_lock, self._sessions.begin() as session:
                yield session
        else:
            async with self._sessions.begin() as session:
                yield session


async def add_counts(session: AsyncSession, request_id: uuid.UUID, **deltas: int) -> None:
    """Move the job's counters, in the transaction of the change they count."""
    deltas = {name: value for name, value in deltas.items() if value}
    if not deltas:
        return
    job = TransferJob
    await session.execute(
        sa.update(job)
        .where(job.request_id == request_id)
        .values({getattr(job, name): getattr(job, name) + value for name, value in deltas.items()})
    )
