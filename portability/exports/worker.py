"""The export worker: claims pending export requests and builds them.

Any number of workers (in `ferry serve` and `ferry worker` processes) may share one database.
An export is claimed with a lease in its request row (queue.py, with the claim statement
and heartbeat the transfer worker uses too), so two workers never build the same export.
The lease is renewed with every progress write (about once a second); a request whose lease
ran out (its worker crashed) is claimed again and rebuilt from the start. Each heartbeat
also notices a cancel: the build stops, its uploads are aborted and what it stored is
deleted. What the worker keeps in `metadata` is typed in state.py.

    pending ─► processing ─► ready ─► completed (every link or object fetched in full)
                   └──────► failed (metadata.error)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.leases import Leaseholder
from db.models import (
    ApiKey,
    AuditLog,
    BillingRecord,
    Bucket,
    Credential,
    PortabilityRequest,
    UsageRecord,
    User,
)
from db.outbox import request_event
from db.wakeup import Subscription
from portability import events
from portability.exports.archive import ArchiveBuilder, ArchiveResult, Delivered
from portability.exports.exceptions import ExportCancelled, ExportFailed
from portability.exports.ferry_source import FerryTables
from portability.exports.links import (
    export_bucket,
    issue_link_credential,
    object_key,
    object_url,
)
from portability.exports.listing import iter_objects, totals
from portability.exports.manifest import ManifestWriter
from portability.exports.notify import Notifier, want
from portability.exports.personal import personal_data
from portability.exports.queue import ExportQueue
from portability.exports.receipt_refresh import ReceiptRefresher
from portability.exports.service import revoke_request_credentials, user_buckets
from portability.exports.settings import ExportSettings
from portability.exports.sink import StorageSink
from portability.exports.sources import PersonalDataSources
from portability.exports.state import ExportState, Options, Progress, StoredFile
from portability.exports.sweeper import Sweeper, purge_objects
from portability.requests import FAILED, PENDING, READY
from storage.base import Storage
from storage.exceptions import NoSuchKey, StorageError

log = logging.getLogger("ferry.exports.worker")

PR = PortabilityRequest


class _Heartbeat:
    """Progress writes, at most once a second, that renew the lease and notice a cancel."""

    def __init__(self, worker: ExportWorker, request_id: uuid.UUID, totals: tuple[int, int]):
        self.worker = worker
        self.request_id = request_id
        self.objects_total, self.bytes_total = totals
        self.started = time.monotonic()
        self.last = 0.0

    async def __call__(self, bytes_done: int, objects_done: int, *, force: bool = False) -> None:
        moment = time.monotonic()
        if not force and moment - self.last < 1.0:
            return
        self.last = moment
        elapsed = max(moment - self.started, 1e-3)
        rate = int(bytes_done / elapsed)
        left = max(self.bytes_total - bytes_done, 0)
        progress = Progress(
            bytes_done=bytes_done,
            bytes_total=max(self.bytes_total, bytes_done),
            objects_done=objects_done,
            objects_total=max(self.objects_total, objects_done),
            bytes_per_second=rate,
            eta_seconds=int(left / rate) if rate > 0 else None,
        )
        async with self.worker.sessions.begin() as session:
            # owned() renews the lease: the progress write is the heartbeat.
            request = await self.worker.owned(session, self.request_id)
            state = ExportState.load(request.meta)
            state.progress = progress
            state.store(request)


class ExportWorker:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        master_key: bytes,
        settings: ExportSettings,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        worker_id: str | None = None,
        wake: Subscription | None = None,
        sources: PersonalDataSources | None = None,
    ) -> None:
        self.sessions = sessions
        # Where each personal-data section comes from: Ferry's tables unless configured.
        self.sources = sources or PersonalDataSources(FerryTables(sessions))
        self.storage = storage
        self.master_key = master_key
        self.settings = settings
        self.notifier = notifier
        self.clock = clock
        self.worker_id = worker_id or uuid.uuid4().hex
        self.queue = ExportQueue(
            sessions, Leaseholder(self.worker_id, settings.lease_seconds, clock=clock)
        )
        self.sweeper = Sweeper(sessions, storage, settings, notifier=notifier, clock=clock)
        self.receipts = ReceiptRefresher(sessions, storage, clock)
        self._receipts_at = 0.0
        # Woken when a request is created (db.wakeup); poll_interval is then the fallback.
        self._wake = wake or Subscription()

    # the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set; errors are logged and the loop goes on."""
        while not stop.is_set():
            busy = False
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("export worker pass failed")
            if not busy:
                await self._wake.wait(self.settings.poll_interval, stop)

    async def run_once(self) -> bool:
        """Sweep, then build one export if one is waiting; True if anything was done."""
        swept = await self.sweeper.run()
        request_id = await self.claim()
        if request_id is not None:
            await self.process(request_id)
            return True
        if time.monotonic() - self._receipts_at >= self.settings.receipt_interval:
            self._receipts_at = time.monotonic()
            await self.refresh_receipts()
        return swept > 0

    # claiming

    async def claim(self) -> uuid.UUID | None:
        """Claim the next export to build (see queue.py); None if nothing is waiting."""
        return await self.queue.claim()

    async def owned(self, session: AsyncSession, request_id: uuid.UUID) -> PortabilityRequest:
        """The request, locked, if this worker still holds it; else ExportCancelled."""
        return await self.queue.owned(session, request_id)

    # building

    async def process(self, request_id: uuid.UUID) -> None:
        async with self.sessions.begin() as session:
            request = await self.owned(session, request_id)
            user = await session.get(User, request.user_id)
            assert user is not None
            buckets = await user_buckets(session, user.id)
            target = await export_bucket(
                session, self.storage, user, backend_bucket=self.settings.exports_bucket
            )
            options = ExportState.load(request.meta).options
            fmt = request.format or "json"
        try:
            # A retried build starts from nothing: drop whatever a crashed attempt stored.
            await purge_objects(self.storage, target, request_id)
            if fmt == "json":
                result = await self._json(request_id, user, target)
            elif fmt == "archive":
                result = await self._archive(request_id, user, target, buckets, options)
            elif fmt == "s3":
                result = await self._pull_manifest(request_id, target, buckets)
            else:
                raise ExportFailed(f"unknown format {fmt!r}")
            await self._ready(request_id, target, result)
        except ExportCancelled:
            log.info("export %s stopped: cancelled or taken over", request_id)
            with contextlib.suppress(Exception):
                await purge_objects(self.storage, target, request_id)
        except (OperationalError, InterfaceError) as exc:
            # The database went away (a restart), not the build: build it again, not failed.
            await self._hand_back(request_id, target, exc)
        except Exception as exc:
            await self._fail(request_id, target, exc)

    async def _hand_back(self, request_id: uuid.UUID, target: Bucket, exc: Exception) -> None:
        """Purge what was stored and make the request pending again, once the database
        answers; if it stays away, the lease runs out and the request is claimed again."""
        log.warning("export %s: lost the database (%s); building it again", request_id, exc)
        for attempt in range(8):
            try:
                async with self.sessions.begin() as session:
                    # Still ours (the row is locked): a `ready` whose commit went through
                    # before the connection dropped is not ours to undo.
                    request = await self.owned(session, request_id)
                    await purge_objects(self.storage, target, request_id)
                    request.status = PENDING
                    await self.queue.release(session, request_id)
                return
            except ExportCancelled:
                return
            except (OperationalError, InterfaceError):
                await asyncio.sleep(min(2.0**attempt, 10.0))

    async def _json(self, request_id: uuid.UUID, user: User, target: Bucket) -> ArchiveResult:
        rows = await self._row_count(user.id)
        beat = _Heartbeat(self, request_id, (rows, 0))
        name = "personal-data.json"
        key = object_key(request_id, name)
        sink = StorageSink(
            self.storage,
            target.backend_bucket,
            target.backend_prefix + key,
            chunk_size=self.settings.upload_chunk_size,
            content_type="application/json",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )
        sha = hashlib.sha256()
        done = 0

        def counted(n: int) -> None:
            nonlocal done
            done += n

        try:
            async for chunk in personal_data(
                self.sessions, user.id, now=self.clock(), on_rows=counted, sources=self.sources
            ):
                sha.update(chunk)
                await sink.write(chunk)
                await beat(sink.size, done)
            await sink.close()
        except BaseException:
            await sink.abort()
            raise
        await beat(sink.size, done, force=True)
        part = Delivered(key, name, sink.size, sha.hexdigest())
        return ArchiveResult([part], None, 0, 0, 0)

    async def _row_count(self, user_id: uuid.UUID) -> int:
        """Rows in the sections read from Ferry's tables (the progress bar's total); rows
        from the provider's own records are not known before they are read."""
        total = 0
        external = self.sources.external()
        async with self.sessions() as session:
            for section, table, column in (
                ("api_keys", ApiKey, ApiKey.user_id),
                ("usage", UsageRecord, UsageRecord.user_id),
                ("billing", BillingRecord, BillingRecord.user_id),
                ("audit_logs", AuditLog, AuditLog.user_id),
            ):
                if section in external:
                    continue
                count = await session.scalar(
                    select(func.count()).select_from(table).where(column == user_id)
                )
                total += int(count or 0)
        return total

    async def _archive(
        self,
        request_id: uuid.UUID,
        user: User,
        target: Bucket,
        buckets: list[Bucket],
        options: Options,
    ) -> ArchiveResult:
        include = options.include
        files = "files" in include
        counts = await totals(self.storage, buckets) if files else (0, 0)
        beat = _Heartbeat(self, request_id, counts)
        now = self.clock()
        builder = ArchiveBuilder(
            self.storage,
            settings=self.settings,
            export_bucket=target,
            request_id=request_id,
            archive_format=options.archive_format,
            now=now,
            progress=beat,
        )
        personal = (
            personal_data(self.sessions, user.id, now=now, sources=self.sources)
            if "personal" in include
            else None
        )
        sources = iter_objects(self.storage, buckets) if files else None
        result = await builder.build(personal=personal, sources=sources)
        await beat(counts[1], result.objects, force=True)
        return result

    async def _pull_manifest(
        self, request_id: uuid.UUID, target: Bucket, buckets: list[Bucket]
    ) -> ArchiveResult:
        counts = await totals(self.storage, buckets)
        beat = _Heartbeat(self, request_id, counts)
        key = object_key(request_id, "manifest.json")
        writer = ManifestWriter(
            StorageSink(
                self.storage,
                target.backend_bucket,
                target.backend_prefix + key,
                chunk_size=self.settings.upload_chunk_size,
                content_type="application/json",
            ),
            {"generated_at": self.clock(), "request_id": str(request_id), "mode": "pull"},
        )
        done_bytes = done = 0
        try:
            async for source in iter_objects(self.storage, buckets):
                info = source.info
                entry: dict[str, Any] = {
                    "bucket": source.bucket.name,
                    "key": info.key,
                    "size": info.size,
                    "etag": info.etag,
                    "last_modified": info.last_modified,
                    "content_type": info.content_type,
                    "sha256": None,
                }
                if self.settings.s3_manifest_sha256:
                    try:
                        entry["sha256"] = await self._sha256(source.bucket, source.backend_key)
                    except NoSuchKey:
                        entry["error"] = "deleted while the export ran"
                await writer.add(entry)
                done += 1
                done_bytes += info.size
                await beat(done_bytes, done)
            stored = await writer.finish()
        except BaseException:
            await writer.sink.abort()
            raise
        manifest = Delivered(key, "manifest.json", stored.size, "")
        return ArchiveResult([], manifest, writer.objects, writer.bytes, 0)

    async def _sha256(self, bucket: Bucket, key: str) -> str:
        sha = hashlib.sha256()
        stream = await self.storage.get(bucket.backend_bucket, key)
        try:
            async for chunk in stream.body:
                if len(chunk) >= 64 * 1024:
                    await asyncio.to_thread(sha.update, chunk)
                else:
                    sha.update(chunk)
        finally:
            await stream.aclose()
        return sha.hexdigest()

    # outcomes

    async def _ready(self, request_id: uuid.UUID, target: Bucket, result: ArchiveResult) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            request = await self.owned(session, request_id)
            user = await session.get(User, request.user_id)
            assert user is not None
            ttl = self.settings.link_ttl_seconds
            if request.expires_at is not None:  # s3: links live as long as the credentials
                ttl = max(1, min(ttl, int((request.expires_at - now).total_seconds())))
            # The secret stays sealed in the credentials table: links are signed when the
            # owner asks (downloads.py), so no working link is written anywhere.
            # An s3 export whose hand-off links the manifest has its credential already.
            state = ExportState.load(request.meta)
            credential = await _issued_link_credential(session, state.link_credential)
            if credential is None:
                credential, _ = await issue_link_credential(
                    session, self.master_key, user, target, request_id, ttl_seconds=ttl, now=now
                )
            first = result.parts[0] if result.parts else result.manifest
            request.status = READY
            request.completed_at = now
            request.expires_at = now + timedelta(seconds=ttl)
            request.export_url = (
                object_url(self.settings.gateway_url, target.name, first.key) if first else None
            )
            request_event(session, "request.ready", request)
            state.parts = [StoredFile(p.name, p.key, p.size, p.sha256) for p in result.parts]
            state.manifest_key = result.manifest.key if result.manifest else None
            state.link_credential = credential.access_key_id
            state.report = report = {
                "objects": result.objects,
                "bytes": result.bytes,
                "skipped": result.skipped,
                "parts": len(state.parts),
                "archive_bytes": sum(p.size for p in result.parts),
                "duration_seconds": _since(state.started_at, now),
            }
            state.store(request)
            await self.queue.release(session, request_id)
            want(request, "export_ready")
            events.record(
                session,
                actor="system",
                action="export.ready",
                user_id=request.user_id,
                credential_id=credential.id,
                details={"request_id": str(request_id), **report},
            )
        log.info("export %s ready: %s", request_id, report)
        if self.notifier is not None:
            await self.notifier.send(request_id, "export_ready")

    async def _fail(self, request_id: uuid.UUID, target: Bucket, exc: Exception) -> None:
        if isinstance(exc, ExportFailed):
            reason = str(exc)
        elif isinstance(exc, StorageError):
            reason = f"storage error: {exc}"
        else:
            reason = f"internal error ({type(exc).__name__})"
        log.error("export %s failed: %s", request_id, reason, exc_info=exc)
        with contextlib.suppress(Exception):
            await purge_objects(self.storage, target, request_id)
        now = self.clock()
        async with self.sessions.begin() as session:
            try:
                request = await self.owned(session, request_id)
            except ExportCancelled:
                return
            request.status = FAILED
            request.completed_at = now
            state = ExportState.load(request.meta)
            state.error = reason.splitlines()[0][:500]
            state.purged_at = now
            state.store(request)
            await self.queue.release(session, request_id)
            request_event(session, "request.failed", request)
            await revoke_request_credentials(session, request, now=now)
            want(request, "export_failed")
        if self.notifier is not None:
            await self.notifier.send(request_id, "export_failed")

    # receipts

    async def refresh_receipts(self) -> int:
        """Update `metadata.receipt` of ready exports; complete those fetched in full."""
        return await self.receipts.refresh_all()

    async def refresh_receipt(self, request_id: uuid.UUID) -> dict[str, Any] | None:
        return await self.receipts.refresh(request_id)


def _since(started: datetime | None, now: datetime) -> float | None:
    if started is None:
        return None
    return round((now - started).total_seconds(), 3)


async def _issued_link_credential(session: AsyncSession, key: str | None) -> Credential | None:
    if not key:
        return None
    found: Credential | None = await session.scalar(
        select(Credential).where(Credential.access_key_id == key)
    )
    return found
