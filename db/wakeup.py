"""Waking workers the moment work arrives, instead of at their next poll.

A transaction that creates work (an export or transfer request) calls `announce_work`. When
it commits, every worker of this process that waits on the process's `WorkSignal` wakes; on
PostgreSQL the same transaction also sends `NOTIFY ferry_work`, which PostgreSQL delivers at
commit (so a woken worker finds the row) to workers in other processes and on other
machines, each listening through `WorkSignal.listen`. Polling stays as the fallback: a lost
notification (a listener reconnecting) costs one poll interval, never the work.

The signal reaches the commit hook through the session's `info` (see
`db.engine.session_factory(engine, signal=...)`), so code that creates work needs no handle
on the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "ferry_work"
SIGNAL_KEY = "ferry.work_signal"  # Session.info: the process's WorkSignal, if any
_PENDING_KEY = "ferry.work_pending"  # Session.info: this transaction created work
RELISTEN_SECONDS = 1.0


class Subscription:
    """One worker's view of the signal: stays set from a wake until the worker waits again,
    so work announced while the worker was busy is not missed."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float, stop: asyncio.Event) -> None:  # noqa: ASYNC109
        """Until woken, `stop` is set, or `timeout` seconds pass; clears the wake."""
        if not self._event.is_set():
            woken = asyncio.ensure_future(self._event.wait())
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((woken, stopped), timeout=timeout, return_when="FIRST_COMPLETED")
            finally:
                for task in (woken, stopped):
                    task.cancel()
        self._event.clear()


class WorkSignal:
    """Wakes this process's workers; see the module docstring."""

    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self) -> Subscription:
        subscription = Subscription()
        self._subscriptions.append(subscription)
        return subscription

    def wake(self) -> None:
        for subscription in self._subscriptions:
            subscription.set()

    async def listen(self, engine: AsyncEngine) -> None:
        """On PostgreSQL: wake on every NOTIFY from other processes, until cancelled."""
        if engine.dialect.name != "postgresql":
            return
        while True:
            try:
                async with engine.connect() as connection:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await autocommit.exec_driver_sql(f"LISTEN {CHANNEL}")
                    raw = await autocommit.get_raw_connection()
                    driver: Any = raw.driver_connection  # psycopg.AsyncConnection
                    self.wake()  # whatever was announced while nobody listened
                    async for _ in driver.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("LISTEN %s failed (%s); polling until it is back", CHANNEL, exc)
            await asyncio.sleep(RELISTEN_SECONDS)


async def announce_work(session: AsyncSession) -> None:
    """Call inside the transaction that creates work: workers wake once it commits."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(sa.text(f"NOTIFY {CHANNEL}"))
    mark_work(session)


def mark_work(session: AsyncSession) -> None:
    """This process's workers wake when the transaction commits (no NOTIFY: for work that
    may wait for the next poll elsewhere, such as a webhook event)."""
    session.info[_PENDING_KEY] = True


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_PENDING_KEY, False):
        signal = session.info.get(SIGNAL_KEY)
        if isinstance(signal, WorkSignal):
            signal.wake()


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_rollback(session: Session, previous_transaction: Any) -> None:
    with contextlib.suppress(KeyError):
        del session.info[_PENDING_KEY]
