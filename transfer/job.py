"""One job as one worker runs it: plan (if it holds the planning lease), copy items, finish.

Beside the copies a heartbeat renews this worker's leases, notices cancellation (the API
sets the request's status to `cancelled`) and writes progress into the request's metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp

from db.engine import first_line
from db.models import PortabilityRequest
from storage.egress import EgressPolicy
from storage.retry import RetryPolicy
from storage.throttle import TokenBucket
from transfer import states
from transfer.config import TransferConfig
from transfer.context import CopyJob
from transfer.copier import ObjectCopier
from transfer.exceptions import (
    ChecksumRefused,
    ItemFailed,
    LeaseLost,
    SourceRefused,
    TransferError,
    Transient,
    UploadGone,
    VerificationFailed,
)
from transfer.findings import TargetFindings
from transfer.finished import FinishedBatch
from transfer.observe import SourceObserver
from transfer.planner import plan
from transfer.report import RateMeter, ReportBuilder, progress
from transfer.retry import engine_policy
from transfer.spec import Destination, Source, Target
from transfer.store import Item, JobStore
from transfer.throttle import MemoryBudget

log = logging.getLogger(__name__)

PLANNING_POLL = 0.1  # seconds between claims that find nothing while the source is listed


class JobRunner:
    """Runs one transfer job in this worker until it has nothing left to do here.

    `destination`: a Target (a bucket and prefix of any Storage: Ferry's own for an import),
    or a Destination, opened on a session of the egress policy for the run. `observer` sees
    every object's bytes as they are read (transfer/observe.py).
    """

    def __init__(
        self,
        *,
        request_id: uuid.UUID,
        source: Source,
        destination: Destination | Target,
        store: JobStore,
        config: TransferConfig,
        budget: MemoryBudget,
        stop: asyncio.Event,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        bandwidth_limit: int | None = None,
        verify: str | None = None,
        egress: EgressPolicy | None = None,
        observer: SourceObserver | None = None,
    ) -> None:
        self.request_id = request_id
        self.observer = observer
        self.source = source
        self.destination = destination
        self.store = store
        self.config = config
        self.budget = budget
        self.stop = stop
        self._monotonic = monotonic
        self._sleep = sleep
        self._bandwidth = bandwidth_limit or config.bandwidth_limit
        self._verify = verify or config.verify
        self.egress = egress or EgressPolicy()
        self.cancelled = False
        # Why the source refused the credential itself (revoked, expired): the job gives up.
        self.refused: str | None = None
        self.worked = False
        self._planning = False
        self._active: dict[int, asyncio.Task[None]] = {}
        # Claimed ahead of the copy slots, in claim order: a claim is a write transaction, and
        # claiming a handful at a time costs as much CPU as signing every request.
        self._queued: dict[int, Item] = {}
        self._rate = RateMeter(clock=monotonic)
        self._retries_flushed = 0
        self._stopping = False
        self._finished = FinishedBatch(store.items, monotonic=monotonic)

    async def run(self) -> PortabilityRequest | None:
        """Returns the request if this worker finished the job (and wrote the report)."""
        job = await self.store.jobs.job(self.request_id)
        if job is None or job.state == states.FINISHED:
            return None
        self.cancelled = job.status == states.CANCELLED
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        async with self.egress.session(
            connector_limit=max(64, self.config.object_concurrency * 2),
            timeout=timeout,
            auto_decompress=False,
        ) as http:
            d = self.destination
            target = d.open(http) if isinstance(d, Destination) else d
            copier = self._copier(target, job.checksum, job.target_empty)
            if job.checksum is None:
                algorithm = copier.findings.algorithm or "md5"
                await self.store.jobs.set_checksum(self.request_id, algorithm)
            heartbeat = asyncio.create_task(self._heartbeat(copier))
            try:
                if not self.cancelled:
                    await self._plan_and_copy(copier, job.state)
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                await self._flush_retries(copier.job.retry)
            if self.cancelled:
                return await self._clean_up_cancelled(copier)
            if self.refused is not None:
                return await self._give_up(copier, self.refused)
            if self._stopping or self.stop.is_set():
                return None
            await self._write_progress()
            return await self.store.jobs.finish(
                self.request_id,
                self._report(
                    sections=getattr(self.observer, "report", None),
                    destination={
                        "destination": {
                            "endpoint_url": _where(self.destination),
                            "bucket": self.destination.bucket,
                            "prefix": self.destination.prefix,
                        },
                        "server_side_copy": copier.findings.server_side,
                        "on_conflict": target.on_conflict,
                    },
                ),
            )

    def _copier(self, target: Target, settled: str | None, target_empty: bool) -> ObjectCopier:
        if target.checksum == "auto":
            algorithm: str | None = None if settled == "md5" else "crc32c"
        else:
            algorithm = None if target.checksum == "md5" else target.checksum
        throttle = TokenBucket(self._bandwidth) if self._bandwidth else None
        retry = engine_policy(
            attempts=self.config.request_attempts,
            base=self.config.backoff_base,
            cap=self.config.backoff_cap,
            sleep=self._sleep,
        )
        config = self.config
        if self._verify != config.verify:
            config = replace(config, verify=self._verify)

        async def fall_back() -> None:
            await self.store.jobs.set_checksum(self.request_id, "md5")

        job = CopyJob(
            source=self.source,
            target=target,
            store=self.store.items,
            config=config,
            budget=self.budget,
            throttle=throttle,
            retry=retry,
            on_checksum_fallback=fall_back,
            finished=self._finished,
            observer=self.observer,
        )
        findings = TargetFindings(
            algorithm=algorithm,
            server_side=target.storage.can_copy_from(self.source.storage),
            check_target=not target_empty,
        )
        return ObjectCopier(job, findings)

    async def _plan_and_copy(self, copier: ObjectCopier, state: str) -> None:
        log.debug("job %s is %s", self.request_id, state)
        planning: asyncio.Task[None] | None = None
        if state == states.PLANNING and await self.store.jobs.claim_planning(self.request_id):
            self._planning = True
            self.worked = True
            planning = asyncio.create_task(self._plan(copier))
        else:
            job = await self.store.jobs.job(self.request_id)
            copier.findings.found_target_empty(job is not None and job.target_empty)
        try:
            # Copying starts with the first page stored, not after the last: a bucket of a
            # million objects is a thousand pages, each listed and stored.
            await self._copy_items(copier, planning)
        finally:
            if planning is not None and not planning.done():
                planning.cancel()
                await asyncio.gather(planning, return_exceptions=True)

    async def _plan(self, copier: ObjectCopier) -> None:
        try:
            await plan(
                request_id=self.request_id,
                source=self.source,
                target=copier.job.target,
                store=self.store.jobs,
                retry=copier.job.retry,
                page_size=self.config.list_page_size,
                target_is_empty=lambda: self._target_is_empty(copier),
                stopping=lambda: self.cancelled or self.stop.is_set(),
            )
        finally:
            self._planning = False

    async def _target_is_empty(self, copier: ObjectCopier) -> bool:
        d = copier.job.target
        try:
            page = await d.storage.list(d.bucket, prefix=d.prefix, max_keys=1)
        except Exception as exc:
            # Not allowed to list (or not now): look for each object with a HEAD instead.
            log.info("cannot list the target (%s); checking objects one by one", exc)
            return False
        empty = not page.objects and not page.common_prefixes
        copier.findings.found_target_empty(empty)  # before the first page is stored: in time
        return empty

    async def _copy_items(
        self, copier: ObjectCopier, planning: asyncio.Task[None] | None = None
    ) -> None:
        # Claiming and recording run beside the copies rather than between them, so that
        # no copy slot stands empty while the database answers.
        stop_waiter = asyncio.create_task(self.stop.wait())
        claiming: asyncio.Task[list[Item]] | None = None
        flushing: asyncio.Task[None] | None = None
        exhausted = False  # the last claim found nothing: wait for a copy to end first
        slots = self.config.object_concurrency
        # Up to two slots' worth of items wait in the queue (their leases renewed with the
        # active ones'); a claim refills it once half of that is gone.
        backlog = 2 * slots
        try:
            while not self.cancelled and not self.stop.is_set() and self.refused is None:
                if planning is not None and planning.done():
                    planning.result()  # a planning error ends the job's run
                    planning, exhausted = None, False  # the last pages: claim again
                while self._queued and len(self._active) < slots:
                    self._start(copier, self._queued.pop(next(iter(self._queued))))
                if flushing is None and self._finished.due():
                    flushing = asyncio.create_task(self._finished.flush())
                room = slots + backlog - len(self._active) - len(self._queued)
                idle = not self._active and not self._queued
                if claiming is None and not exhausted and (room >= backlog // 2 or idle):
                    claiming = asyncio.create_task(
                        self.store.items.claim_items(self.request_id, room)
                    )
                busy = [t for t in (claiming, flushing, planning) if t is not None]
                if not self._active and not busy and not self._queued:
                    break
                await asyncio.wait(
                    [*self._active.values(), *busy, stop_waiter],
                    # While the source is being listed, an empty claim is tried again soon:
                    # the next page may be stored by then.
                    timeout=PLANNING_POLL if planning is not None and exhausted else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if planning is not None:
                    exhausted = False
                if flushing is not None and flushing.done():
                    failed = flushing.exception()
                    flushing = None
                    if failed is not None:
                        raise failed  # a database error ends the loop
                if claiming is not None and claiming.done():
                    claimed = claiming.result()
                    claiming = None
                    self._queued.update((item.id, item) for item in claimed)
                    exhausted = not claimed
                for item_id, task in list(self._active.items()):
                    if task.done():
                        del self._active[item_id]
                        exhausted = False
        except Exception as exc:
            # A database error (or the planning's) ends the loop, not the copies in flight:
            # a copy cancelled now may already be written at the target, and given back it
            # would be written again. They need no database to finish, and what they finish
            # joins the finished batch, which this runner keeps for its next run.
            await self._let_copies_finish(first_line(exc))
            raise
        finally:
            stop_waiter.cancel()
            if claiming is not None:
                # Items it claimed hold leases: start nothing new, hand them back below.
                late = (await asyncio.gather(claiming, return_exceptions=True))[0]
                if isinstance(late, list):
                    self._queued.update((item.id, item) for item in late)
            if self._queued:
                unstarted, self._queued = list(self._queued.values()), {}
                await self._quietly(self.store.items.release_unstarted(unstarted))
            if flushing is not None:
                await asyncio.gather(flushing, return_exceptions=True)
            if self._active:
                self._stopping = not self.cancelled
                for task in self._active.values():
                    task.cancel()
                await asyncio.gather(*self._active.values(), return_exceptions=True)
                self._active.clear()
            # Copied and verified: record them even when stopping (else they are copied again).
            await self._finished.flush()

    async def _let_copies_finish(self, cause: str) -> None:
        """Wait for the copies in flight, unless the worker stops or the job is cancelled."""
        if not self._active:
            return
        log.warning(
            "transfer %s: %s; letting %d copies in flight finish",
            self.request_id,
            cause,
            len(self._active),
        )
        stop_waiter = asyncio.create_task(self.stop.wait())
        try:
            while self._active and not self.cancelled and not self.stop.is_set():
                await asyncio.wait(
                    [*self._active.values(), stop_waiter], return_when=asyncio.FIRST_COMPLETED
                )
                for item_id, task in list(self._active.items()):
                    if task.done():
                        del self._active[item_id]
        finally:
            stop_waiter.cancel()

    def _start(self, copier: ObjectCopier, item: Item) -> None:
        self.worked = True
        self._active[item.id] = asyncio.create_task(self._copy_one(copier, item))

    async def _copy_one(self, copier: ObjectCopier, item: Item) -> None:
        try:
            if not item.target_key:
                raise ItemFailed("the key relative to the source prefix is empty")
            await copier.copy(item)
        except asyncio.CancelledError:
            if not self.cancelled:
                # This worker is stopping (or lost the lease): give the item back at once,
                # with its upload, for another worker to resume.
                await self._quietly(self.store.items.release(item, None))
            return
        except LeaseLost as exc:
            log.warning("lost the lease on %r: %s", item.key, exc)
        except VerificationFailed as exc:
            await self._retry_or_fail(copier, item, exc.reason, restart=True)
        except SourceRefused as exc:
            self.refused = str(exc)
            await self._fail(copier, item, exc.reason)
        except ItemFailed as exc:
            await self._fail(copier, item, exc.reason)
        except (Transient, UploadGone, ChecksumRefused) as exc:
            await self._retry_or_fail(copier, item, f"gave up after retries: {exc}", restart=False)
        except TransferError as exc:
            await self._retry_or_fail(copier, item, str(exc), restart=False)
        except Exception as exc:
            log.exception("unexpected error copying %r", item.key)
            await self._retry_or_fail(
                copier, item, f"internal error: {type(exc).__name__}: {exc}", restart=False
            )

    async def _retry_or_fail(
        self, copier: ObjectCopier, item: Item, reason: str, *, restart: bool
    ) -> None:
        if item.attempts >= self.config.item_attempts:
            await self._fail(copier, item, reason)
            return
        log.warning("%r: %s; will try again", item.key, reason)
        current = await self.store.items.current(item.id)
        if restart and current is not None:
            await self._quietly(self._abort(copier, current))
        await self._quietly(self.store.items.release(item, reason))

    async def _fail(self, copier: ObjectCopier, item: Item, reason: str) -> None:
        log.warning("%r failed: %s", item.key, reason)
        current = await self.store.items.current(item.id)
        if current is not None:
            await self._quietly(self._abort(copier, current))
        await self._quietly(self.store.items.record_failure(item, reason))

    async def _abort(self, copier: ObjectCopier, item: Item) -> None:
        if item.upload_id is not None:
            with contextlib.suppress(TransferError):
                await copier.abort(item.target_key, item.upload_id)
            await self.store.items.reset_upload(item)

    async def _quietly(self, call: Awaitable[object]) -> None:
        try:
            await call
        except LeaseLost as exc:
            log.warning("%s", exc)

    async def _heartbeat(self, copier: ObjectCopier) -> None:
        last_progress = -1e9
        while True:
            await self._sleep(self.config.heartbeat_seconds)
            try:
                status, lost = await self.store.heartbeat(
                    self.request_id,
                    [*self._active, *self._queued, *self._finished.ids()],
                    planning=self._planning,
                )
                for item_id in lost:
                    self._queued.pop(item_id, None)
                    task = self._active.get(item_id)
                    if task is not None:
                        log.warning("item %d was taken over by another worker", item_id)
                        task.cancel()
                if status == states.CANCELLED and not self.cancelled:
                    log.info("transfer %s was cancelled", self.request_id)
                    self.cancelled = True
                    for task in self._active.values():
                        task.cancel()
                await self._flush_retries(copier.job.retry)
                if self._finished.due():
                    # The copy loop flushes when a copy ends; this covers long quiet spells
                    # (one big object still running) so the progress shows finished items.
                    await self._finished.flush()
                if self._monotonic() - last_progress >= self.config.progress_seconds:
                    last_progress = self._monotonic()
                    await self._write_progress()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A database hiccup must not stop the copies; the next beat tries again
                # (leases are long enough to survive a few missed beats).
                log.exception("heartbeat of transfer %s failed", self.request_id)

    async def _write_progress(self) -> None:
        job = await self.store.jobs.job(self.request_id)
        if job is None:
            return
        rate = self._rate.sample(job.bytes_done)
        phase = states.PLANNING if job.state == states.PLANNING else states.COPYING
        await self.store.jobs.write_meta(
            self.request_id,
            {"progress": progress(job, rate, phase)},
            only_if=(states.PROCESSING,),
        )

    async def _flush_retries(self, retry: RetryPolicy) -> None:
        delta = retry.retries - self._retries_flushed
        if delta > 0:
            self._retries_flushed = retry.retries
            await self.store.jobs.add_retries(self.request_id, delta)

    async def _clean_up_cancelled(self, copier: ObjectCopier) -> PortabilityRequest | None:
        """Abort every open upload nobody else holds, then close the job once."""
        await self._abort_open_uploads(copier)
        # Uploads other live workers hold are theirs to abort: they notice the cancel too.
        return await self.store.jobs.finish(self.request_id, self._report())

    async def _give_up(self, copier: ObjectCopier, cause: str) -> PortabilityRequest | None:
        """The source refused the credential: abort the uploads, end the job as failed with
        the objects not yet copied left as they are (counted in the report)."""
        await self._abort_open_uploads(copier)
        report = self._report(cause=cause, sections=getattr(self.observer, "report", None))
        return await self.store.jobs.finish(self.request_id, report, give_up=True)

    def _report(self, **extra: Any) -> ReportBuilder:
        return ReportBuilder(
            verify=self._verify,
            failures_limit=self.config.report_failures_limit,
            objects_limit=self.config.report_objects_limit,
            **extra,
        )

    async def _abort_open_uploads(self, copier: ObjectCopier) -> None:
        for item in await self.store.items.open_uploads(self.request_id, mine_only=False):
            if item.upload_id is None:
                continue
            with contextlib.suppress(TransferError):
                await copier.abort(item.target_key, item.upload_id)
            await self.store.items.clear_upload(item.id)


def _where(destination: Destination | Target) -> str:
    if isinstance(destination, Destination):
        return destination.endpoint_url
    return destination.storage.location
