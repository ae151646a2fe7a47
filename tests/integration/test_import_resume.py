"""An import checked against a manifest, interrupted mid-object and resumed.

The SHA-256 of a whole object cannot be carried across a crash, and the parts sent before it
are not fetched from the source again: the engine completes the resumed upload, reads the
object back from Ferry's own storage through the manifest check, and deletes it if the check
refuses it. Source reads are counted on the source backend itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.types import utcnow
from portability.imports.manifest import Expected
from portability.imports.runner import ManifestCheck
from storage.base import ObjectStream
from storage.local import LocalStorage
from tests.support.objects import read_object, stream_of
from tests.support.transfer_worker import new_transfer
from transfer import TransferConfig, copy_job
from transfer.store import JobStore

MiB = 1024 * 1024
PART = 5 * MiB
IN_ORDER = TransferConfig(
    part_size=PART,
    multipart_threshold=PART,
    heartbeat_seconds=1,
    lease_seconds=10,
    part_concurrency=1,
    read_ahead_parts=0,
)


class CountingSource(LocalStorage):
    """The old provider: records the byte ranges each read asks for."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[tuple[int | None, int | None]] = []

    async def get(
        self, bucket: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        self.reads.append((start, end))
        return await super().get(bucket, key, start=start, end=end)


class StopAt(ManifestCheck):
    """The manifest check, with the worker stopping when the third part is read."""

    def __init__(self, expected: dict[str, Expected], stop: asyncio.Event) -> None:
        super().__init__(expected)
        self.stop = stop

    def read(self, key: str, offset: int, data: memoryview) -> None:
        super().read(key, offset, data)
        if offset == 2 * PART:
            self.stop.set()


async def _interrupted_then_resumed(
    tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession], manifest_sha: str | None
) -> tuple[Any, CountingSource, LocalStorage, bytes]:
    source, ferry = CountingSource(tmp_path / "old"), LocalStorage(tmp_path / "ferry")
    await source.create_bucket("theirs")
    await ferry.create_bucket("mine")
    body = os.urandom(4 * PART + 7)
    await source.put("theirs", "big.bin", stream_of(body), size=len(body))
    sha = manifest_sha or hashlib.sha256(body).hexdigest()
    expected = {"big.bin": Expected(size=len(body), sha256=sha)}
    request_id = await new_transfer(db_sessions)
    ends: dict[str, Any] = {
        "source": source,
        "source_bucket": "theirs",
        "source_prefix": "",
        "target": ferry,
        "target_bucket": "mine",
        "target_prefix": "",
        "store": JobStore(db_sessions, owner="import-resume", lease_seconds=10, clock=utcnow),
        "config": IN_ORDER,
    }
    stop = asyncio.Event()
    assert await copy_job(request_id, observer=StopAt(expected, stop), stop=stop, **ends) is None
    assert (await ferry.list("mine")).objects == []  # nothing unverified is visible
    source.reads.clear()
    finished = await copy_job(request_id, observer=ManifestCheck(expected), **ends)
    return finished, source, ferry, body


async def test_a_resumed_object_is_checked_without_fetching_its_sent_parts_again(
    tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    finished, source, ferry, body = await _interrupted_then_resumed(tmp_path, db_sessions, None)
    try:
        assert finished is not None and finished.status == "completed", finished.meta
        starts = sorted(start or 0 for start, _ in source.reads)
        # Parts 1 and 2 were stored before the stop: only the rest is fetched again.
        assert starts and min(starts) >= 2 * PART, source.reads
        assert await read_object(ferry, "mine", "big.bin") == body
    finally:
        await source.close()
        await ferry.close()


async def test_a_resumed_object_the_manifest_refuses_is_deleted(
    tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    finished, source, ferry, _ = await _interrupted_then_resumed(tmp_path, db_sessions, "0" * 64)
    try:
        assert finished is not None and finished.status == "failed"
        (failure,) = finished.meta["report"]["failures"]
        assert "does not match the source's manifest" in failure["reason"]
        assert (await ferry.list("mine")).objects == []
    finally:
        await source.close()
        await ferry.close()
