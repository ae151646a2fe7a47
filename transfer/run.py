"""One call that runs a copy job between any two `Storage` ends.

The transfer worker finds requests and resolves their ends itself; a caller that already
holds both ends (an import: the user's old provider as an `S3Storage` built on a session of
the egress policy, Ferry's own backend as the target) calls `copy_job`::

    finished = await copy_job(
        request_id,
        source=remote, source_bucket="photos", source_prefix="2024/",
        target=runtime.storage, target_bucket="backend-bucket", target_prefix="users/7/photos/",
        store=JobStore(sessions, owner="import-host-1", lease_seconds=60, clock=utcnow),
        config=TransferConfig(),
        observer=sha256_check,   # optional: transfer/observe.py
    )

The request row (`portability_requests`) must exist; the job row is made here. The call
returns the request once this run has finished the job (its report stored), or None when
it stopped first (`stop` set, or the job is held by another worker): calling again resumes,
without sending again the parts already on the target.
"""

from __future__ import annotations

import asyncio
import uuid

from db.models import PortabilityRequest
from storage.base import Storage
from storage.egress import EgressPolicy
from transfer.config import TransferConfig
from transfer.job import JobRunner
from transfer.observe import SourceObserver
from transfer.spec import Source, Target
from transfer.store import JobStore
from transfer.throttle import MemoryBudget


async def copy_job(
    request_id: uuid.UUID,
    *,
    source: Storage,
    source_bucket: str,
    source_prefix: str,
    target: Storage,
    target_bucket: str,
    target_prefix: str,
    store: JobStore,
    config: TransferConfig,
    observer: SourceObserver | None = None,
    checksum: str = "auto",
    on_conflict: str = "skip_identical",
    stop: asyncio.Event | None = None,
    budget: MemoryBudget | None = None,
    egress: EgressPolicy | None = None,
) -> PortabilityRequest | None:
    """Copy every object under `source_prefix` to the same relative key under
    `target_prefix`; see the module docstring. `on_conflict` is one of `spec.ON_CONFLICT`.
    Neither storage is closed here."""
    job = await store.jobs.open_job(request_id)
    if job is None:
        return None
    runner = JobRunner(
        request_id=request_id,
        source=Source(source, source_bucket, source_prefix),
        destination=Target(
            target, target_bucket, target_prefix, checksum=checksum, on_conflict=on_conflict
        ),
        store=store,
        config=config,
        budget=budget or MemoryBudget(config.memory_limit),
        stop=stop or asyncio.Event(),
        egress=egress,
        observer=observer,
    )
    return await runner.run()
