"""What one job's copies share in one worker and never change while it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from storage.base import ObjectInfo
from storage.retry import RetryPolicy
from storage.throttle import TokenBucket
from transfer.config import TransferConfig
from transfer.finished import FinishedBatch
from transfer.observe import SourceObserver
from transfer.spec import Source, Target
from transfer.store import ItemRows
from transfer.throttle import MemoryBudget


@dataclass(frozen=True)
class CopyJob:
    """The ends, limits and collaborators of one job's copies in one worker.

    What the copies learn about the ends as they go is kept apart, in one mutable
    TargetFindings (transfer/findings.py).
    """

    source: Source
    target: Target
    store: ItemRows
    config: TransferConfig
    budget: MemoryBudget
    throttle: TokenBucket | None
    retry: RetryPolicy
    # Called once when the target refuses the flexible checksum, to record it for the job.
    on_checksum_fallback: Callable[[], Awaitable[None]]
    # Where items finished without an upload are queued to be recorded in batches;
    # None: each is recorded at once.
    finished: FinishedBatch | None = None
    # Sees every object's bytes as they are read (transfer/observe.py).
    observer: SourceObserver | None = None


def attributes(info: ObjectInfo) -> dict[str, Any]:
    return {"metadata": dict(info.metadata), "headers": dict(info.headers)}
