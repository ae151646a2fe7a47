"""The transfer worker: finds transfer requests with work, and runs their jobs.

Any number of workers (processes, machines) share one PostgreSQL database: planning is
held by a lease on the job, objects by leases on their items, all renewed by heartbeats, so
a crashed worker's work is taken over when its leases run out. On SQLite one process works
at a time.

The composition root builds it::

    worker = TransferWorker(sessions, resolve=resolve, worker_id="host-1234")
    await worker.run(stop_event)

`resolve(request)` turns a request row into its Source and Destination (it unseals the
destination; this package never does). `on_finished(request)` is called once per job, by
the worker that closed it, after its final status and report are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import first_line
from db.models import PortabilityRequest
from db.types import utcnow
from db.wakeup import Subscription
from storage.egress import EgressPolicy
from transfer import states
from transfer.config import TransferConfig
from transfer.exceptions import TransferError
from transfer.job import JobRunner
from transfer.observe import SourceObserver
from transfer.spec import Destination, Source, Target
from transfer.store import JobStore
from transfer.throttle import MemoryBudget

log = logging.getLogger(__name__)

Resolve = Callable[[PortabilityRequest], Awaitable[tuple[Source, Destination | Target]]]
OnFinished = Callable[[PortabilityRequest], Awaitable[None]]
# The observer of one request's source reads (an import's manifest check), or None.
Observe = Callable[[PortabilityRequest], Awaitable[SourceObserver | None]]

DB_RERUNS = 5  # times a job's runner is run again after losing the database


class TransferWorker:
    """Copies transfer requests' objects; see the module docstring."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        resolve: Resolve,
        worker_id: str,
        config: TransferConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_finished: OnFinished | None = None,
        egress: EgressPolicy | None = None,
        wake: Subscription | None = None,
        observe: Observe | None = None,
    ) -> None:
        self.config = config or TransferConfig()
        self._observe = observe
        # Destinations are user-supplied: public addresses only, unless the policy says more.
        self.egress = egress or EgressPolicy()
        # Woken when a request is created (db.wakeup); poll_seconds is then only the fallback.
        self._wake = wake or Subscription()
        self.worker_id = worker_id
        self._resolve = resolve
        self._sleep = sleep
        self._monotonic = monotonic
        self._on_finished = on_finished
        self.store = JobStore(
            sessions, owner=worker_id, lease_seconds=self.config.lease_seconds, clock=clock
        )
        # One memory budget for every job this worker runs: the ceiling is per process.
        self.budget = MemoryBudget(self.config.memory_limit)
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; in-flight items are then handed back for others."""
        self._stop = stop
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("transfer worker %s: a pass failed", self.worker_id)
                worked = False
            if not worked and not stop.is_set():
                await self._wake.wait(self.config.poll_seconds, stop)

    async def run_once(self) -> bool:
        """One pass: run the first job that has work for this worker. True if it did any."""
        for request_id in await self.store.jobs.find_work():
            if self._stop.is_set():
                return False
            if await self._run_job(request_id):
                return True
        return False

    async def _run_job(self, request_id: uuid.UUID) -> bool:
        job = await self.store.jobs.open_job(request_id)
        if job is None or job.state == states.FINISHED:
            return False
        request = await self.store.jobs.request(request_id)
        if request is None:
            return False
        try:
            source, destination = await self._resolve(request)
            observer = await self._observe(request) if self._observe is not None else None
        except Exception as exc:
            # Nothing can be copied without both ends: the request fails with the reason.
            if isinstance(exc, TransferError):
                reason = str(exc)
            else:
                reason = f"{type(exc).__name__}: {exc}"
            log.warning("transfer %s cannot start: %s", request_id, reason)
            failed = await self.store.jobs.fail_request(request_id, f"cannot start: {reason}")
            if failed is not None:
                await self._finished(failed)
                return True
            return False
        options = (request.meta or {}).get("options") or {}
        runner = JobRunner(
            request_id=request_id,
            source=source,
            destination=destination,
            store=self.store,
            config=self.config,
            budget=self.budget,
            stop=self._stop,
            monotonic=self._monotonic,
            sleep=self._sleep,
            bandwidth_limit=_positive_int(options.get("max_bytes_per_second")),
            verify=options.get("verify") if options.get("verify") in ("etag", "full") else None,
            egress=self.egress,
            observer=observer,
        )
        try:
            finished = await self._run_through_outages(runner)
        finally:
            if source.owned:
                with contextlib.suppress(Exception):
                    await source.storage.close()
        if finished is not None:
            await self._finished(finished)
            return True
        return runner.worked

    async def _run_through_outages(self, runner: JobRunner) -> PortabilityRequest | None:
        """Run the job; after a lost database connection, run the same runner again.

        The runner keeps what it copied but had not recorded yet (its finished batch, kept on
        a failed write): a new runner would leave those items to be copied a second time
        once their leases ran out, the same one records them.
        """
        for attempt in range(DB_RERUNS + 1):
            try:
                return await runner.run()
            except (OperationalError, InterfaceError) as exc:
                if attempt == DB_RERUNS or self._stop.is_set():
                    raise
                log.warning(
                    "transfer %s: database error (%s); running the job again",
                    runner.request_id,
                    first_line(exc),
                )
                await self._sleep(min(2.0**attempt, 10.0))
        raise AssertionError("unreachable")

    async def _finished(self, request: PortabilityRequest) -> None:
        log.info("transfer %s finished: %s", request.id, request.status)
        if self._on_finished is not None:
            try:
                await self._on_finished(request)
            except Exception:
                log.exception("on_finished hook failed for transfer %s", request.id)


def _positive_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None
