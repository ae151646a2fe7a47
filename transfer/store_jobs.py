"""Job-level rows: finding work, the planning lease and cursor, progress, the final report.

See store.py for the rules every write here follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.leases import LEASE_FREED
from db.models import PortabilityRequest, TransferItem, TransferJob
from db.outbox import request_event
from db.statements import insert_ignore
from transfer import states
from transfer.exceptions import LeaseLost
from transfer.store_tx import Transactions, add_counts

_JOBS = cast(sa.Table, TransferJob.__table__)


@dataclass(frozen=True)
class JobView:
    """A job's row with its request's status, read in one go."""

    request_id: uuid.UUID
    status: str
    state: str
    checksum: str | None
    target_empty: bool
    objects_total: int
    bytes_total: int
    objects_copied: int
    bytes_copied: int
    objects_skipped: int
    bytes_skipped: int
    objects_failed: int
    bytes_done: int
    retries: int
    started_at: datetime
    finished_at: datetime | None

    @property
    def objects_done(self) -> int:
        return self.objects_copied + self.objects_skipped + self.objects_failed


class JobRows:
    """The job's and the request's rows, written by one worker."""

    def __init__(self, db: Transactions) -> None:
        self._db = db
        self._leases = db.leases

    async def find_work(self, limit: int = 20) -> list[uuid.UUID]:
        """Transfer requests that may have work: active ones, and cancelled ones not cleaned."""
        request, job = PortabilityRequest, TransferJob
        query = (
            sa.select(request.id)
            .outerjoin(job, job.request_id == request.id)
            .where(
                request.request_type.in_(states.COPY_REQUEST_TYPES),
                sa.or_(
                    sa.and_(
                        request.status.in_((states.PENDING, states.PROCESSING)),
                        sa.or_(job.state.is_(None), job.state != states.FINISHED),
                    ),
                    sa.and_(request.status == states.CANCELLED, job.state != states.FINISHED),
                ),
            )
            .order_by(request.created_at, request.id)
            .limit(limit)
        )
        async with self._db.read() as session:
            return list((await session.scalars(query)).all())

    async def open_job(self, request_id: uuid.UUID) -> JobView | None:
        """Make sure the job row exists and the request says `processing`; None if it is gone."""
        async with self._db.write() as session:
            await session.execute(
                insert_ignore(session, TransferJob).values(
                    request_id=request_id, state=states.PLANNING, started_at=self._leases.clock()
                )
            )
            await session.execute(
                sa.update(PortabilityRequest)
                .where(
                    PortabilityRequest.id == request_id,
                    PortabilityRequest.status == states.PENDING,
                )
                .values(status=states.PROCESSING)
            )
        return await self.job(request_id)

    async def request(self, request_id: uuid.UUID) -> PortabilityRequest | None:
        async with self._db.read() as session:
            return await session.get(PortabilityRequest, request_id)

    async def job(self, request_id: uuid.UUID) -> JobView | None:
        async with self._db.read() as session:
            row = (
                await session.execute(
                    sa.select(TransferJob, PortabilityRequest.status)
                    .join(PortabilityRequest, PortabilityRequest.id == TransferJob.request_id)
                    .where(TransferJob.request_id == request_id)
                )
            ).first()
        if row is None:
            return None
        job, status = row
        return JobView(
            request_id=job.request_id,
            status=status,
            state=job.state,
            checksum=job.checksum,
            target_empty=job.target_empty,
            objects_total=job.objects_total,
            bytes_total=job.bytes_total,
            objects_copied=job.objects_copied,
            bytes_copied=job.bytes_copied,
            objects_skipped=job.objects_skipped,
            bytes_skipped=job.bytes_skipped,
            objects_failed=job.objects_failed,
            bytes_done=job.bytes_done,
            retries=job.retries,
            started_at=job.started_at,
            finished_at=job.finished_at,
        )

    async def claim_planning(self, request_id: uuid.UUID) -> bool:
        """Take (or keep) the planning lease; False if another worker holds it."""
        job = _JOBS.c
        claim = self._leases.claim(
            _JOBS, job.request_id == request_id, job.state == states.PLANNING, reentrant=True
        )
        async with self._db.write() as session:
            owned = await session.scalar(claim.returning(job.request_id))
        return owned is not None

    async def plan_cursor(self, request_id: uuid.UUID) -> str | None:
        async with self._db.read() as session:
            return await session.scalar(
                sa.select(TransferJob.plan_cursor).where(TransferJob.request_id == request_id)
            )

    async def store_page(
        self, request_id: uuid.UUID, rows: Sequence[Mapping[str, Any]], cursor: str
    ) -> None:
        """Items of one listing page and the cursor after them, atomically.

        A key stored already (a listing that repeats itself across pages) is not added twice.
        """
        job = _JOBS.c
        async with self._db.write() as session:
            owned = await session.scalar(
                self._leases.renew(
                    _JOBS, job.request_id == request_id, job.state == states.PLANNING
                )
                .values(plan_cursor=cursor)
                .returning(job.request_id)
            )
            if owned is None:
                raise LeaseLost("the planning lease went to another worker")
            if not rows:
                return
            added = (
                await session.scalars(
                    insert_ignore(session, TransferItem).returning(TransferItem.size),
                    [
                        {**row, "request_id": request_id, "state": states.ITEM_PENDING}
                        for row in rows
                    ],
                )
            ).all()
            await add_counts(session, request_id, objects_total=len(added), bytes_total=sum(added))

    async def finish_planning(self, request_id: uuid.UUID) -> None:
        job = TransferJob
        async with self._db.write() as session:
            await session.execute(
                sa.update(job)
                .where(job.request_id == request_id, job.lease_owner == self._leases.owner)
                .values(state=states.COPYING, planned_at=self._leases.clock(), **LEASE_FREED)
            )

    async def set_target_empty(self, request_id: uuid.UUID, empty: bool) -> None:
        await self._update(request_id, target_empty=empty)

    async def set_checksum(self, request_id: uuid.UUID, checksum: str) -> None:
        await self._update(request_id, checksum=checksum)

    async def add_retries(self, request_id: uuid.UUID, count: int) -> None:
        if count > 0:
            await self._update(request_id, retries=TransferJob.retries + count)

    async def _update(self, request_id: uuid.UUID, **values: Any) -> None:
        async with self._db.write() as session:
            await session.execute(
                sa.update(TransferJob).where(TransferJob.request_id == request_id).values(**values)
            )

    # the request row

    async def write_meta(
        self, request_id: uuid.UUID, changes: Mapping[str, Any], *, only_if: Sequence[str]
    ) -> bool:
        """Merge top-level metadata keys while the request's status is one of `only_if`."""
        async with self._db.write() as session:
            request = await _locked_request(session, request_id)
            if request is None or request.status not in only_if:
                return False
            request.meta = {**(request.meta or {}), **changes}
        return True

    async def finish(
        self,
        request_id: uuid.UUID,
        build: Callable[
            [AsyncSession, TransferJob, str], Awaitable[tuple[dict[str, Any], str | None]]
        ],
        *,
        give_up: bool = False,
    ) -> PortabilityRequest | None:
        """Close the job once (the caller that wins the compare-and-set writes the report).

        `build(session, job, status)` returns (metadata changes, error) inside the transaction.
        Returns the request as finished, or None if there is still work or it is done already.
        `give_up`: fail the request now, the objects not copied yet left as they are.
        """
        now = self._leases.clock()
        async with self._db.write() as session:
            request = await _locked_request(session, request_id)
            if request is None:
                return None
            cancelled = request.status == states.CANCELLED
            if not cancelled and request.status != states.PROCESSING:
                return None
            if not cancelled and not give_up:
                still_open = await session.scalar(
                    sa.select(TransferItem.id)
                    .where(
                        TransferItem.request_id == request_id,
                        TransferItem.state.in_(states.OPEN_ITEM_STATES),
                    )
                    .limit(1)
                )
                if still_open is not None:
                    return None
            open_job = [TransferJob.request_id == request_id, TransferJob.state != states.FINISHED]
            if not cancelled and not give_up:
                open_job.append(TransferJob.state == states.COPYING)
            job = await session.scalar(
                sa.update(TransferJob)
                .where(*open_job)
                .values(state=states.FINISHED, finished_at=now, lease_owner=None)
                .returning(TransferJob),
                execution_options={"synchronize_session": False},
            )
            if job is None:
                return None
            if cancelled:
                status = states.CANCELLED
            elif give_up:
                status = states.FAILED
            else:
                status = states.COMPLETED if job.objects_failed == 0 else states.FAILED
            changes, error = await build(session, job, status)
            if error:
                changes["error"] = error
            request.meta = {**(request.meta or {}), **changes}
            announce = request.status != status  # a cancel was announced when it was made
            request.status = status
            if request.completed_at is None:
                request.completed_at = now
            if announce:
                request_event(session, f"request.{status}", request)
            return request

    async def fail_request(self, request_id: uuid.UUID, error: str) -> PortabilityRequest | None:
        """End a request that cannot start (its source or destination does not resolve)."""
        now = self._leases.clock()
        async with self._db.write() as session:
            request = await _locked_request(session, request_id)
            if request is None or request.status not in (states.PENDING, states.PROCESSING):
                return None
            await session.execute(
                sa.update(TransferJob)
                .where(TransferJob.request_id == request_id)
                .values(state=states.FINISHED, finished_at=now, lease_owner=None)
            )
            request.status = states.FAILED
            request.completed_at = now
            request.meta = {**(request.meta or {}), "error": error}
            request_event(session, "request.failed", request)
            return request


async def _locked_request(
    session: AsyncSession, request_id: uuid.UUID
) -> PortabilityRequest | None:
    """The request row, locked for this transaction.

    A no-op UPDATE first: on PostgreSQL it locks the row as FOR UPDATE would; on SQLite it
    makes the transaction a writer from its start (a reader that later writes may be refused
    at once with "database is locked" when another connection committed in between).
    """
    await session.execute(
        sa.update(PortabilityRequest)
        .where(PortabilityRequest.id == request_id)
        .values(status=PortabilityRequest.status)
    )
    return await session.get(PortabilityRequest, request_id, populate_existing=True)
