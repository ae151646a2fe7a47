"""What one job's copies share in one worker."""

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


@dataclass
class CopyContext:
    """Everything one job's copies share in one worker."""

    source: Source
    target: Target
    store: ItemRows
    config: TransferConfig
    budget: MemoryBudget
    throttle: TokenBucket | None
    retry: RetryPolicy
    algorithm: str | None  # flexible checksum in use; None: Content-MD5 alone
    server_side: bool  # the target's storage can copy from the source's itself
    on_checksum_fallback: Callable[[], Awaitable[None]]
    # Whether an object may be on the target already (False: the target was empty at
    # planning, so the per-object HEAD is skipped).
    check_target: bool = True
    # Where items finished without an upload are queued to be recorded in batches;
    # None: each is recorded at once.
    finished: FinishedBatch | None = None
    # Sees every object's bytes as they are read (transfer/observe.py).
    observer: SourceObserver | None = None
    # Whether a source's plain-hex ETag may stand in for the MD5 of a single PUT's body;
    # cleared for the job the first time one does not match the bytes.
    source_md5: bool = True
    # Whether the target refuses a part whose flexible checksum does not match its bytes;
    # None until ObjectCopier._probe has asked it. True: parts are not hashed with MD5.
    checksum_checked: bool | None = None


def attributes(info: ObjectInfo) -> dict[str, Any]:
    return {"metadata": dict(info.metadata), "headers": dict(info.headers)}
