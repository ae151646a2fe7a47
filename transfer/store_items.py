"""Item-level rows: claiming objects to copy, their uploads and parts, their final states.

Every write an item's worker makes is conditional on still holding that item's lease, so a
worker that lost it (it stalled, another took over) cannot record anything for the item:
it gets LeaseLost instead. Counters on the job row move in the same transaction as the
state change they count. Items are claimed with the lease claim of db/leases.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.leases import LEASE_FREED
from db.models import TransferItem, TransferPart
from transfer import states
from transfer.exceptions import LeaseLost
from transfer.store_tx import Transactions, add_counts


@dataclass(frozen=True)
class Item:
    id: int
    request_id: uuid.UUID
    key: str
    target_key: str
    target: str
    size: int
    etag: str
    content_type: str | None
    attributes: Mapping[str, Any] | None
    upload_id: str | None
    part_size: int | None
    checksum: str | None
    attempts: int
    conflict: str | None = None  # as TransferItem.conflict

    @classmethod
    def of(cls, row: TransferItem | sa.Row[Any]) -> Item:
        return cls(
            id=row.id,
            request_id=row.request_id,
            key=row.key,
            target_key=row.target_key,
            target=row.target,
            size=row.size,
            etag=row.etag,
            content_type=row.content_type,
            attributes=row.attributes,
            upload_id=row.upload_id,
            part_size=row.part_size,
            checksum=row.checksum,
            attempts=row.attempts,
            conflict=row.conflict,
        )


@dataclass(frozen=True)
class StoredPart:
    part_number: int
    size: int
    md5: str | None
    checksum: str | None
    etag: str


_ITEMS = cast(sa.Table, TransferItem.__table__)

# Moves a held item to its final state (no row: the lease was lost). Also run as one
# executemany for a batch of finished items.
_FINISH = (
    sa.update(_ITEMS)
    .where(
        _ITEMS.c.id == sa.bindparam("b_id"),
        _ITEMS.c.lease_owner == sa.bindparam("b_owner"),
        _ITEMS.c.state == states.ITEM_COPYING,
    )
    .values(
        state=sa.bindparam("b_state"),
        verified=sa.bindparam("b_verified"),
        target_etag=sa.bindparam("b_target_etag"),
        error=sa.bindparam("b_error"),
        upload_id=None,
        # lease_owner stays: it records which worker finished the item.
        lease_expires_at=None,
        finished_at=sa.bindparam("b_finished_at"),
    )
)


class ItemRows:
    """The item and part rows, written by one worker."""

    def __init__(self, db: Transactions) -> None:
        self._db = db
        self._leases = db.leases

    async def claim_items(self, request_id: uuid.UUID, limit: int) -> list[Item]:
        # Core statements on the table, not ORM ones: the ORM's per-execution set-up of a
        # bulk UPDATE cost more than the statement itself.
        item = _ITEMS.c
        claim = self._leases.claim(
            _ITEMS,
            item.request_id == request_id,
            item.state.in_(states.OPEN_ITEM_STATES),
            order_by=(item.id,),
            limit=limit,
            values={"state": states.ITEM_COPYING, "attempts": item.attempts + 1},
        )
        async with self._db.write() as session:
            rows = (await session.execute(claim.returning(*_ITEMS.c))).all()
            return sorted((Item.of(row) for row in rows), key=lambda i: i.id)

    async def current(self, item_id: int) -> Item | None:
        async with self._db.read() as session:
            row = await session.get(TransferItem, item_id)
            return None if row is None else Item.of(row)

    async def record_upload(
        self,
        item: Item,
        *,
        upload_id: str,
        part_size: int,
        checksum: str | None,
        content_type: str,
        attributes: Mapping[str, Any],
    ) -> Item:
        """Store a new upload id at once: from here on a crash or cancel can abort it."""
        async with self._db.write() as session:
            await self._hold(session, item)
            await session.execute(
                sa.update(TransferItem)
                .where(TransferItem.id == item.id)
                .values(
                    upload_id=upload_id,
                    part_size=part_size,
                    checksum=checksum,
                    content_type=content_type,
                    attributes=dict(attributes),
                )
            )
        return Item(
            **{
                **item.__dict__,
                "upload_id": upload_id,
                "part_size": part_size,
                "checksum": checksum,
                "content_type": content_type,
                "attributes": dict(attributes),
            }
        )

    async def parts(self, item_id: int) -> list[StoredPart]:
        async with self._db.read() as session:
            rows = await session.scalars(
                sa.select(TransferPart)
                .where(TransferPart.item_id == item_id)
                .order_by(TransferPart.part_number)
            )
            return [
                StoredPart(p.part_number, p.size, p.md5, p.checksum, p.etag) for p in rows.all()
            ]

    async def record_part(self, item: Item, part: StoredPart) -> None:
        """A part the target acknowledged (a repeated part number replaces the old row)."""
        async with self._db.write() as session:
            await self._hold(session, item)
            old = await session.get(TransferPart, (item.id, part.part_number))
            delta = part.size
            if old is None:
                session.add(
                    TransferPart(
                        item_id=item.id,
                        part_number=part.part_number,
                        size=part.size,
                        md5=part.md5,
                        checksum=part.checksum,
                        etag=part.etag,
                    )
                )
            else:
                delta -= old.size
                old.size, old.md5, old.checksum, old.etag = (
                    part.size,
                    part.md5,
                    part.checksum,
                    part.etag,
                )
            await add_counts(session, item.request_id, bytes_done=delta)

    async def forget_parts(self, item: Item, numbers: Sequence[int] | None = None) -> None:
        """Drop stored parts (all, or the given numbers) and take their bytes off the count."""
        async with self._db.write() as session:
            await self._hold(session, item)
            await self._drop_parts(session, item, numbers)

    async def reset_upload(self, item: Item) -> Item:
        """Forget the upload (after aborting it, or when the target lost it)."""
        async with self._db.write() as session:
            await self._hold(session, item)
            await self._drop_parts(session, item, None)
            await session.execute(
                sa.update(TransferItem)
                .where(TransferItem.id == item.id)
                .values(upload_id=None, part_size=None, checksum=None)
            )
        return Item(**{**item.__dict__, "upload_id": None, "part_size": None, "checksum": None})

    async def record_done(self, item: Item, *, verified: str, target_etag: str) -> None:
        await self._finish(item, states.DONE, verified=verified, target_etag=target_etag)

    async def record_skip(self, item: Item, *, verified: str, target_etag: str) -> None:
        await self._finish(item, states.SKIPPED, verified=verified, target_etag=target_etag)

    async def record_failure(self, item: Item, reason: str) -> None:
        await self._finish(item, states.ITEM_FAILED, error=reason)

    async def record_conflict(self, item: Item, conflict: str) -> None:
        """Note what the copy found at the target key ('replaced' or 'kept'), at once."""
        async with self._db.write() as session:
            await session.execute(
                sa.update(TransferItem).where(TransferItem.id == item.id).values(conflict=conflict)
            )

    async def release(self, item: Item, reason: str | None) -> None:
        """Give the item back (a retryable failure, or this worker is stopping); an item that
        is no longer being copied (done, skipped, failed) stays as it is."""
        async with self._db.write() as session:
            await session.execute(
                sa.update(TransferItem)
                .where(
                    TransferItem.id == item.id,
                    TransferItem.lease_owner == self._leases.owner,
                    TransferItem.state == states.ITEM_COPYING,
                )
                .values(state=states.ITEM_PENDING, error=reason, **LEASE_FREED)
            )

    async def release_unstarted(self, items: Sequence[Item]) -> None:
        """Give back items claimed ahead that were never started: their claim's attempt is
        returned too, so a worker that stops often does not use up an item's attempts."""
        async with self._db.write() as session:
            await session.execute(
                sa.update(TransferItem)
                .where(
                    TransferItem.id.in_([item.id for item in items]),
                    TransferItem.lease_owner == self._leases.owner,
                    TransferItem.state == states.ITEM_COPYING,
                )
                .values(
                    state=states.ITEM_PENDING,
                    **LEASE_FREED,
                    attempts=sa.case(
                        (TransferItem.attempts > 0, TransferItem.attempts - 1), else_=0
                    ),
                )
            )

    async def ledger_match(self, item: Item, target_etag: str) -> bool:
        """Whether a finished transfer wrote this target key from this source version, and
        the target answered then with the ETag it has now."""
        t = TransferItem
        async with self._db.read() as session:
            found = await session.scalar(
                sa.select(t.id)
                .where(
                    t.target == item.target,
                    t.target_key == item.target_key,
                    t.etag == item.etag,
                    t.size == item.size,
                    t.state == states.DONE,
                    t.target_etag == target_etag,
                )
                .limit(1)
            )
        return found is not None

    async def open_uploads(self, request_id: uuid.UUID, *, mine_only: bool) -> list[Item]:
        """Items with an upload id: this worker's, or (not mine_only) also those nobody holds."""
        t = TransferItem
        holder = self._leases.holds(_ITEMS)
        if not mine_only:
            holder = sa.or_(holder, self._leases.free(_ITEMS, self._leases.clock()))
        async with self._db.read() as session:
            rows = await session.scalars(
                sa.select(t).where(t.request_id == request_id, t.upload_id.is_not(None), holder)
            )
            return [Item.of(row) for row in rows.all()]

    async def clear_upload(self, item_id: int) -> None:
        async with self._db.write() as session:
            await session.execute(
                sa.update(TransferItem).where(TransferItem.id == item_id).values(upload_id=None)
            )

    # helpers

    async def _hold(self, session: AsyncSession, item: Item) -> None:
        """Raise LeaseLost unless this worker still holds the item (and extend the lease)."""
        held = await session.scalar(
            self._leases.renew(
                _ITEMS, _ITEMS.c.id == item.id, _ITEMS.c.state == states.ITEM_COPYING
            ).returning(_ITEMS.c.id)
        )
        if held is None:
            raise LeaseLost(f"item {item.key!r} is no longer held by {self._leases.owner}")

    async def _drop_parts(
        self, session: AsyncSession, item: Item, numbers: Sequence[int] | None
    ) -> None:
        where = [TransferPart.item_id == item.id]
        if numbers is not None:
            if not numbers:
                return
            where.append(TransferPart.part_number.in_(numbers))
        dropped = await session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(TransferPart.size), 0)).where(*where)
        )
        await session.execute(sa.delete(TransferPart).where(*where))
        await add_counts(session, item.request_id, bytes_done=-int(dropped or 0))

    async def record_finished(self, finished: Sequence[Finished]) -> list[Item]:
        """Record many finished items without uploads in one transaction (see finished.py);
        returns those whose lease this worker had lost, which are left as they are."""
        if any(f.item.upload_id is not None for f in finished):
            raise ValueError("items with an upload are recorded one at a time")
        if not finished:
            return []
        by_id = {f.item.id: f for f in finished}
        now = self._leases.clock()
        async with self._db.write() as session:
            # One executemany of one cached statement for the whole batch: a transaction per
            # item made recording the bottleneck for small objects, and a single UPDATE with
            # a CASE per item had to be compiled anew for every batch size.
            connection = await session.connection()
            result = await connection.execute(
                _FINISH,
                [
                    self._finish_params(f.item, f.state, f.verified, f.target_etag, None, now)
                    for f in finished
                ],
            )
            if result.rowcount == len(by_id):
                held = set(by_id)
            else:
                # Some leases were lost: the items this worker finished are those it holds
                # in a final state, stamped with this batch's time.
                t = _ITEMS.c
                held = set(
                    await session.scalars(
                        sa.select(t.id).where(
                            t.id.in_(by_id),
                            t.lease_owner == self._leases.owner,
                            t.finished_at == now,
                        )
                    )
                )
            totals: dict[uuid.UUID, dict[str, int]] = {}
            for i in held:
                f = by_id[i]
                deltas = totals.setdefault(f.item.request_id, {})
                for name, value in _deltas(f.item, f.state, 0).items():
                    deltas[name] = deltas.get(name, 0) + value
            for request_id, deltas in totals.items():
                await add_counts(session, request_id, **deltas)
        return [f.item for i, f in by_id.items() if i not in held]

    async def _mark(
        self,
        session: AsyncSession,
        item: Item,
        state: str,
        verified: str | None,
        target_etag: str | None,
        error: str | None,
    ) -> bool:
        """Move a held item to its final state; False if this worker no longer holds it."""
        connection = await session.connection()
        result = await connection.execute(
            _FINISH,
            self._finish_params(item, state, verified, target_etag, error, self._leases.clock()),
        )
        return result.rowcount == 1

    def _finish_params(
        self,
        item: Item,
        state: str,
        verified: str | None,
        target_etag: str | None,
        error: str | None,
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "b_id": item.id,
            "b_owner": self._leases.owner,
            "b_state": state,
            "b_verified": verified,
            "b_target_etag": target_etag,
            "b_error": error,
            "b_finished_at": now,
        }

    async def _finish(
        self,
        item: Item,
        state: str,
        *,
        verified: str | None = None,
        target_etag: str | None = None,
        error: str | None = None,
    ) -> None:
        async with self._db.write() as session:
            if not await self._mark(session, item, state, verified, target_etag, error):
                raise LeaseLost(f"item {item.key!r} is no longer held by {self._leases.owner}")
            in_parts = 0
            # Only a multipart upload has parts (a failure may come before the caller's
            # snapshot saw its upload id, so it always looks).
            if item.upload_id is not None or state == states.ITEM_FAILED:
                in_parts = int(
                    await session.scalar(
                        sa.select(sa.func.coalesce(sa.func.sum(TransferPart.size), 0)).where(
                            TransferPart.item_id == item.id
                        )
                    )
                    or 0
                )
                await session.execute(
                    sa.delete(TransferPart).where(TransferPart.item_id == item.id)
                )
            await add_counts(session, item.request_id, **_deltas(item, state, in_parts))


@dataclass(frozen=True)
class Finished:
    """An item copied (or skipped) and verified, waiting to be recorded."""

    item: Item
    state: str  # DONE or SKIPPED
    verified: str
    target_etag: str


def _deltas(item: Item, state: str, in_parts: int) -> dict[str, int]:
    """The job's counters that finishing `item` moves (`in_parts`: bytes counted already)."""
    if state == states.DONE:
        return {
            "objects_copied": 1,
            "bytes_copied": item.size,
            "bytes_done": item.size - in_parts,
        }
    if state == states.SKIPPED:
        return {
            "objects_skipped": 1,
            "bytes_skipped": item.size,
            "bytes_done": item.size - in_parts,
        }
    return {"objects_failed": 1, "bytes_done": -in_parts}
