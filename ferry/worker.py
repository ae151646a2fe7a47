"""The background workers of a process: exports and transfers, built from the runtime.

`ferry serve` runs them beside its listeners (unless --no-worker); `ferry worker` runs only
them. Any number of such processes share one PostgreSQL database: each claims its own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.models import Bucket, PortabilityRequest
from ferry.config import Config, WorkersConfig
from ferry.runtime import Runtime, personal_data_sources
from portability.exports.notify import Notifier
from portability.exports.settings import ExportSettings
from portability.exports.worker import ExportWorker
from portability.imports.runner import manifest_check, resolve_import
from portability.imports.service import REQUEST_TYPE as IMPORT
from portability.mail import Mailer, MailSettings
from portability.transfers import open_destination
from portability.webhooks.delivery import DeliverySettings, WebhookWorker
from transfer.config import TransferConfig
from transfer.exceptions import TransferError
from transfer.observe import SourceObserver
from transfer.spec import Destination, Source, Target
from transfer.worker import TransferWorker

log = logging.getLogger("ferry.worker")

# How long the workers' database connections are retried while PostgreSQL is down.
DB_PATIENCE_S = 60.0


def export_settings(config: Config) -> ExportSettings:
    e = config.exports
    return ExportSettings(
        gateway_url=config.gateway.public_url,
        region=config.gateway.region,
        exports_bucket=e.exports_bucket,
        part_size=e.part_size,
        upload_chunk_size=e.upload_chunk_size,
        link_ttl_seconds=e.link_ttl_seconds,
        compression_level=e.compression_level,
        max_active_per_user=e.max_active_per_user,
        s3_manifest_sha256=e.s3_manifest_sha256,
        poll_interval=float(config.workers.poll_seconds),
    )


def notifier(runtime: Runtime) -> Notifier:
    mail = runtime.config.mail
    settings = MailSettings(
        smtp_url=str(mail.smtp_url), sender=mail.from_, outbox=mail.outbox, ca_file=mail.ca_file
    )
    return Notifier(runtime.sessions, Mailer(settings), dashboard_url=runtime.config.api.public_url)


def transfer_resolver(
    runtime: Runtime,
) -> Callable[[PortabilityRequest], Awaitable[tuple[Source, Destination | Target]]]:
    """Both ends of a copy request. A transfer: the user's bucket, the sealed destination.
    An import: the sealed source, the user's bucket (portability.imports.runner)."""

    async def resolve(request: PortabilityRequest) -> tuple[Source, Destination | Target]:
        if request.request_type == IMPORT:
            return await resolve_import(
                request,
                sessions=runtime.sessions,
                storage=runtime.storage,
                master_key=runtime.master_key,
                egress=runtime.egress,
            )
        options = (request.meta or {}).get("options", {}).get("source", {})
        async with runtime.sessions() as session:
            bucket = await session.scalar(
                select(Bucket).where(
                    Bucket.name == options.get("bucket"), Bucket.owner_id == request.user_id
                )
            )
        if bucket is None:
            raise TransferError(f"the source bucket {options.get('bucket')!r} no longer exists")
        source = Source(
            runtime.storage,
            bucket.backend_bucket,
            bucket.backend_prefix + str(options.get("prefix") or ""),
        )
        destination = open_destination(runtime.master_key, request).for_copy()
        return source, destination

    return resolve


async def run_workers(runtime: Runtime, stop: asyncio.Event) -> None:
    if runtime.engine.dialect.name != "postgresql":
        await _run_workers(runtime, runtime.sessions, stop)
        return
    # On PostgreSQL the workers get an engine of their own that waits out a server restart:
    # a failed transaction in the middle of a job costs work done again (a request handler
    # should rather fail fast, so the runtime's engine does not wait).
    engine = create_engine(runtime.config.database.url, connect_patience=DB_PATIENCE_S)
    # Requests made by other processes (the API of another `ferry serve`, the CLI) arrive as
    # NOTIFY; requests made in this one wake the workers directly.
    listener = asyncio.create_task(runtime.work_signal.listen(engine))
    try:
        await _run_workers(runtime, session_factory(engine, signal=runtime.work_signal), stop)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await engine.dispose()


async def _run_workers(
    runtime: Runtime, sessions: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> None:
    worker_id = f"{socket.gethostname()}:{os.getpid()}"
    notify = notifier(runtime)
    exports = ExportWorker(
        sessions=sessions,
        storage=runtime.storage,
        master_key=runtime.master_key,
        settings=export_settings(runtime.config),
        notifier=notify,
        worker_id=worker_id,
        wake=runtime.work_signal.subscribe(),
        sources=personal_data_sources(runtime.config, sessions),
    )

    async def transfer_finished(request: PortabilityRequest) -> None:
        await notify.notify_transfer_finished(request)

    async def observe(request: PortabilityRequest) -> SourceObserver | None:
        return await manifest_check(request, master_key=runtime.master_key, egress=runtime.egress)

    transfers = TransferWorker(
        sessions,
        resolve=transfer_resolver(runtime),
        worker_id=worker_id,
        on_finished=transfer_finished,
        config=transfer_config(runtime.config.workers),
        egress=runtime.egress,
        wake=runtime.work_signal.subscribe(),
        observe=observe,
    )
    webhooks = WebhookWorker(
        sessions,
        runtime.master_key,
        egress=runtime.egress,
        settings=DeliverySettings(
            backoff_base=float(runtime.config.webhooks.backoff_base_seconds),
            poll_seconds=float(runtime.config.workers.poll_seconds),
        ),
        wake=runtime.work_signal.subscribe(),
    )
    log.info("workers started as %s", worker_id)
    await asyncio.gather(exports.run(stop), transfers.run(stop), webhooks.run(stop))


def transfer_config(workers: WorkersConfig) -> TransferConfig:
    return TransferConfig(
        poll_seconds=float(workers.poll_seconds),
        lease_seconds=float(workers.lease_seconds),
        heartbeat_seconds=workers.lease_seconds / 6,
        bandwidth_limit=workers.bandwidth_limit or None,
    )
