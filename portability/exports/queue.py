"""Which export a worker builds next, and whether it still holds it.

An export's build is held by a lease on its `export_jobs` row, claimed and renewed with the
same statements as a transfer's jobs and items (db/leases.py). A claim takes the oldest
export that is pending, or whose builder's lease ran out (it crashed), and marks the request
`processing`; every write of the build goes through :meth:`ExportQueue.owned`, which renews
the lease, locks the request and fails with ExportCancelled once the export was cancelled
or taken over.
"""

from __future__ import annotations

import logging
import uuid
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.leases import LEASE_FREED, Leaseholder
from db.models import ExportJob, PortabilityRequest
from db.statements import insert_ignore
from portability.exports.exceptions import ExportCancelled
from portability.exports.service import lock_request
from portability.exports.state import ExportState
from portability.requests import PENDING, PROCESSING

log = logging.getLogger("ferry.exports.queue")

_JOBS = cast(sa.Table, ExportJob.__table__)
PR = PortabilityRequest


class _Gone(Exception):
    """The claimed export changed state before its claim committed: undo the claim."""


class ExportQueue:
    """Claims exports for one worker (`leases.owner`) and checks it still holds them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], leases: Leaseholder) -> None:
        self._sessions = sessions
        self.leases = leases

    async def claim(self) -> uuid.UUID | None:
        """Take the oldest export waiting to be built (or rebuilt); None if there is none."""
        job = _JOBS.c
        waiting = sa.select(PR.id).where(
            PR.request_type == "export", PR.status.in_((PENDING, PROCESSING))
        )
        created = sa.select(PR.created_at).where(PR.id == job.request_id).scalar_subquery()
        claim = self.leases.claim(
            _JOBS, job.request_id.in_(waiting), order_by=(created, job.request_id)
        ).returning(job.request_id)
        async with self._sessions() as session:
            # An idle poll stays a read: on SQLite a write transaction takes the database's
            # one write lock, which the gateway's audit writes wait for.
            if await session.scalar(waiting.limit(1)) is None:
                return None
        try:
            async with self._sessions.begin() as session:
                # A pending export has no job row until a worker first looks: make them.
                await session.execute(
                    insert_ignore(session, ExportJob).from_select(
                        ["request_id"],
                        sa.select(PR.id).where(
                            PR.request_type == "export",
                            PR.status == PENDING,
                            ~sa.exists().where(job.request_id == PR.id),
                        ),
                    )
                )
                request_id = await session.scalar(claim)
                if request_id is None:
                    return None
                request = await lock_request(session, request_id)
                if request is None or request.status not in (PENDING, PROCESSING):
                    raise _Gone  # cancelled meanwhile
                request.status = PROCESSING
                state = ExportState.load(request.meta)
                state.attempts += 1
                state.started_at = self.leases.clock()
                state.store(request)
        except _Gone:
            return None
        log.info("export %s claimed by %s", request_id, self.leases.owner)
        return cast(uuid.UUID, request_id)

    async def owned(self, session: AsyncSession, request_id: uuid.UUID) -> PortabilityRequest:
        """The request, locked, if this worker still holds it (its lease is renewed: this is
        the heartbeat); else ExportCancelled: it was cancelled, or its lease ran out and
        another worker took it over."""
        held = await session.scalar(
            self.leases.renew(_JOBS, _JOBS.c.request_id == request_id).returning(_JOBS.c.request_id)
        )
        request = await lock_request(session, request_id) if held is not None else None
        if request is None or request.status != PROCESSING:
            raise ExportCancelled(f"export {request_id} is no longer ours")
        return request

    async def release(self, session: AsyncSession, request_id: uuid.UUID) -> None:
        """Give the build's lease up (it is built, failed, or handed back to be built again)."""
        await session.execute(
            sa.update(_JOBS)
            .where(_JOBS.c.request_id == request_id, self.leases.holds(_JOBS))
            .values(LEASE_FREED)
        )
