"""Leases on rows of work: which worker holds a row, and until when.

A leased table has two columns, ``lease_owner`` and ``lease_expires_at``: transfer jobs
(planning), transfer items (copying) and portability requests (an export being built). A
lease is free when nobody holds it or it ran out. A worker renews what it holds with
:meth:`Leaseholder.renew`; one that stops renewing (it crashed, it stalled) loses its rows
to the next claimer, and every write it makes afterwards is conditional on still holding
the lease, so it can record nothing more.

One claim statement serves every kind of work, the same on both databases::

    WITH candidates AS MATERIALIZED (
        SELECT id FROM t WHERE <work> AND <free> ORDER BY … LIMIT n FOR UPDATE SKIP LOCKED)
    UPDATE t SET lease_owner = :me, lease_expires_at = :until, …
    WHERE id IN (SELECT id FROM candidates) AND <work> AND <free>
    RETURNING …

On PostgreSQL concurrent claimers skip each other's candidates instead of waiting, and the
repeated WHERE is checked again on a row another claimer changed meanwhile, so two never
take one row. SQLite ignores FOR UPDATE; it has one writer at a time, and a single statement
makes the transaction a writer from its start (a read that later turns into a write can be
refused at once with "database is locked"). What RETURNING gives back is what was claimed.
The CTE is materialised because PostgreSQL may otherwise run a LIMIT subquery inside
``IN (…)`` more than once and so claim more than ``n`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from db.types import utcnow

__all__ = ["LEASE_FREED", "Leaseholder"]

# Values that give a row's lease up.
LEASE_FREED: Mapping[str, None] = {"lease_owner": None, "lease_expires_at": None}


@dataclass(frozen=True)
class Leaseholder:
    """A worker as it holds leases: its id, how long a lease lasts, and its clock."""

    owner: str
    seconds: float
    clock: Callable[[], datetime] = field(default=utcnow, compare=False)

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("a lease must last longer than zero seconds")

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def holds(self, table: sa.Table) -> sa.ColumnElement[bool]:
        """Rows whose lease this worker holds (it may have run out: nobody took it yet)."""
        return table.c.lease_owner == self.owner

    @staticmethod
    def free(table: sa.Table, now: datetime) -> sa.ColumnElement[bool]:
        """Rows nobody holds, or whose lease ran out before `now`."""
        lease = table.c
        return sa.or_(
            lease.lease_owner.is_(None),
            lease.lease_expires_at.is_(None),
            lease.lease_expires_at < now,
        )

    def claim(
        self,
        table: sa.Table,
        *work: sa.ColumnElement[bool],
        order_by: Sequence[sa.ColumnElement[Any]] = (),
        limit: int = 1,
        reentrant: bool = False,
        values: Mapping[str, Any] | None = None,
    ) -> sa.Update:
        """The claim statement (see the module docstring) for up to `limit` rows of `work`
        whose lease is free, or already this worker's if `reentrant`. `values` are set on
        the claimed rows too. Add ``.returning(…)`` to learn what was claimed."""
        now = self.clock()
        takeable = self.free(table, now)
        if reentrant:
            takeable = sa.or_(takeable, self.holds(table))
        (key,) = table.primary_key.columns
        candidates = (
            sa.select(key)
            .where(*work, takeable)
            .order_by(*order_by)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("candidates")
            .prefix_with("MATERIALIZED")
        )
        return (
            sa.update(table)
            .where(key.in_(sa.select(candidates.c[key.name])), *work, takeable)
            .values(
                {
                    **(values or {}),
                    "lease_owner": self.owner,
                    "lease_expires_at": now + self.length,
                }
            )
        )

    def renew(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.Update:
        """The heartbeat: extend this worker's leases on the rows matching `where`. Rows it
        no longer holds are left as they are; add ``.returning(…)`` to learn which it does.
        On PostgreSQL the UPDATE also locks the rows it renews until the transaction ends."""
        return (
            sa.update(table)
            .where(*where, self.holds(table))
            .values(lease_expires_at=self.clock() + self.length)
        )
