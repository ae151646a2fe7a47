"""The copy engine's database side: jobs, items, parts, leases and counters.

A worker's store is two small objects sharing one way into the database
(store_tx.Transactions): `jobs` (store_jobs.JobRows: finding work, planning, progress, the
final report) and `items` (store_items.ItemRows: claiming objects, uploads, parts, final
states). Each call is one short transaction of its own. Every write is conditional on still
holding the lease it needs (db/leases.py: the claim statement and heartbeat the export
worker uses too), so a worker that lost a lease (it stalled, another took over) records
nothing more for that work: it gets LeaseLost instead.

Claiming is `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL (concurrent workers get disjoint
rows without waiting); SQLite ignores FOR UPDATE, and the compare-and-set UPDATE around it
(lease free or run out) makes the claim safe for its single writer at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.leases import Leaseholder
from db.models import PortabilityRequest, TransferItem, TransferJob
from transfer import states
from transfer.store_items import Finished, Item, ItemRows, StoredPart
from transfer.store_jobs import JobRows, JobView
from transfer.store_tx import Transactions

__all__ = ["Finished", "Item", "ItemRows", "JobRows", "JobStore", "JobView", "StoredPart"]

_ITEMS = cast(sa.Table, TransferItem.__table__)
_JOBS = cast(sa.Table, TransferJob.__table__)


class JobStore:
    """Database operations of one worker (`owner` is its worker id)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        owner: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = Transactions(sessions, Leaseholder(owner, lease_seconds, clock=clock))
        self.jobs = JobRows(self._db)
        self.items = ItemRows(self._db)

    @property
    def owner(self) -> str:
        return self._db.leases.owner

    async def heartbeat(
        self, request_id: uuid.UUID, item_ids: Sequence[int], *, planning: bool
    ) -> tuple[str | None, set[int]]:
        """Renew this worker's leases on the job's items it copies (and on planning);
        returns the request's status and the items whose lease was lost."""
        leases = self._db.leases
        async with self._db.write() as session:
            if item_ids:
                await session.execute(
                    leases.renew(
                        _ITEMS, _ITEMS.c.id.in_(item_ids), _ITEMS.c.state == states.ITEM_COPYING
                    )
                )
            if planning:
                await session.execute(leases.renew(_JOBS, _JOBS.c.request_id == request_id))
            lost: set[int] = set()
            if item_ids:
                # Open items this worker no longer holds (finished ones are simply done).
                t = _ITEMS.c
                lost = set(
                    (
                        await session.scalars(
                            sa.select(t.id).where(
                                t.id.in_(item_ids),
                                t.state.in_(states.OPEN_ITEM_STATES),
                                sa.or_(t.lease_owner.is_(None), t.lease_owner != leases.owner),
                            )
                        )
                    ).all()
                )
            status = await session.scalar(
                sa.select(PortabilityRequest.status).where(PortabilityRequest.id == request_id)
            )
        return status, lost
