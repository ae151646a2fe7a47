"""The copy engine between any two `Storage` ends: SeaweedFS → local, local → SeaweedFS,
local → local, and a multipart copy into the local backend interrupted and resumed.

Run through `transfer.copy_job`, the entry point an import uses. What arrived is read back
through the other backend (or boto3) and compared by SHA-256, content type and metadata.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.types import utcnow
from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.objects import read_object, stream_of
from tests.support.transfer_worker import new_transfer
from tests.support.tricky_keys import TRICKY_KEYS
from transfer import TransferConfig, copy_job
from transfer.exceptions import VerificationFailed
from transfer.store import JobStore

MiB = 1024 * 1024
PART = 5 * MiB
CONFIG = TransferConfig(
    part_size=PART, multipart_threshold=PART, heartbeat_seconds=1, lease_seconds=10
)
# In part order, so an observer can hash each object as one stream.
IN_ORDER = TransferConfig(
    part_size=PART,
    multipart_threshold=PART,
    heartbeat_seconds=1,
    lease_seconds=10,
    part_concurrency=1,
    read_ahead_parts=0,
)
# SeaweedFS rewrites `//`, `.` and `..` segments, a leading `/` and a key ending in `/`;
# the local backend keeps every key as it is.
SEAWEED_KEYS = [
    k
    for k in TRICKY_KEYS
    if "//" not in k
    and "/." not in k
    and not k.startswith((".", "/"))
    and not k.endswith("/")
    # room for the prefixes the tests add
    and len(k.encode()) < 1000
]


@dataclass
class Tree:
    """What was put in the source: key -> (sha256, content type, metadata)."""

    objects: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)


async def _fill(storage: Storage, bucket: str, prefix: str, keys: list[str]) -> Tree:
    tree = Tree()
    bodies = {key: f"body of {key}".encode() for key in keys}
    bodies["big/multipart.bin"] = os.urandom(2 * PART + 123)
    bodies["small/empty"] = b""
    for i, (key, body) in enumerate(bodies.items()):
        metadata = {"index": str(i), "origin": "ferry-test"}
        content_type = "application/x-test" if i % 2 else "text/plain; charset=utf-8"
        await storage.put(
            bucket,
            prefix + key,
            stream_of(body),
            size=len(body),
            content_type=content_type,
            metadata=metadata,
        )
        tree.objects[key] = (hashlib.sha256(body).hexdigest(), content_type, metadata)
    return tree


async def _check_arrived(storage: Storage, bucket: str, prefix: str, tree: Tree) -> None:
    listed = await storage.list(bucket, prefix=prefix, max_keys=1000)
    assert sorted(o.key for o in listed.objects) == sorted(prefix + k for k in tree.objects)
    for key, (sha256, content_type, metadata) in tree.objects.items():
        info = await storage.head(bucket, prefix + key)
        body = await read_object(storage, bucket, prefix + key)
        assert hashlib.sha256(body).hexdigest() == sha256, key
        assert info.content_type == content_type, key
        assert dict(info.metadata) == metadata, key


class Sha256Check:
    """An observer as an import would write one: SHA-256 of each object as it is read."""

    def __init__(self, expected: dict[str, str], prefix: str) -> None:
        self.expected = expected
        self.prefix = prefix
        self.hashes: dict[str, hashlib._Hash] = {}
        self.offsets: dict[str, list[int]] = {}
        self.checked: set[str] = set()

    def read(self, key: str, offset: int, data: memoryview) -> None:
        if offset == 0:
            self.hashes[key] = hashlib.sha256()
        self.offsets.setdefault(key, []).append(offset)
        if key in self.hashes:
            self.hashes[key].update(data)

    async def finished(self, key: str, size: int) -> None:
        hashed = self.hashes.pop(key, None)
        if hashed is None or hashed.hexdigest() != self.expected[key[len(self.prefix) :]]:
            raise VerificationFailed(f"{key!r} does not have the manifest's SHA-256")
        self.checked.add(key)


def _store(db_sessions: async_sessionmaker[AsyncSession], owner: str) -> JobStore:
    return JobStore(db_sessions, owner=owner, lease_seconds=10, clock=utcnow)


def _s3(server: S3Server) -> S3Storage:
    return S3Storage(
        server.endpoint_url, server.region, server.access_key_id, server.secret_access_key
    )


async def test_seaweedfs_to_local_is_byte_identical_and_observed(
    seaweedfs: S3Server, tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source, local = _s3(seaweedfs), LocalStorage(tmp_path / "local")
    bucket = seaweedfs.new_bucket("src")
    await local.create_bucket("mine")
    try:
        tree = await _fill(source, bucket, "old/", SEAWEED_KEYS)
        check = Sha256Check({k: v[0] for k, v in tree.objects.items()}, "old/")
        finished = await copy_job(
            await new_transfer(db_sessions),
            source=source,
            source_bucket=bucket,
            source_prefix="old/",
            target=local,
            target_bucket="mine",
            target_prefix="users/7/",
            store=_store(db_sessions, "import-a"),
            config=IN_ORDER,
            observer=check,
            egress=LOOPBACK,
        )
        assert finished is not None and finished.status == "completed", finished and finished.meta
        await _check_arrived(local, "mine", "users/7/", tree)
        # Every object passed through the observer, its parts in order.
        assert check.checked == {"old/" + k for k in tree.objects}
        assert check.offsets["old/big/multipart.bin"] == [0, PART, 2 * PART]
        report = (finished.meta or {})["report"]
        assert report["objects"]["copied"] == len(tree.objects)
    finally:
        await source.close()
        await local.close()


async def test_a_manifest_mismatch_keeps_the_object_from_the_target(
    seaweedfs: S3Server, tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source, local = _s3(seaweedfs), LocalStorage(tmp_path / "local")
    bucket = seaweedfs.new_bucket("src")
    await local.create_bucket("mine")
    try:
        tree = await _fill(source, bucket, "", ["a.txt"])
        expected = {k: v[0] for k, v in tree.objects.items()}
        expected["big/multipart.bin"] = "0" * 64
        finished = await copy_job(
            await new_transfer(db_sessions),
            source=source,
            source_bucket=bucket,
            source_prefix="",
            target=local,
            target_bucket="mine",
            target_prefix="",
            store=_store(db_sessions, "import-b"),
            config=IN_ORDER,
            observer=Sha256Check(expected, ""),
            egress=LOOPBACK,
        )
        assert finished is not None and finished.status == "failed"
        listed = await local.list("mine")
        assert sorted(o.key for o in listed.objects) == ["a.txt", "small/empty"]
    finally:
        await source.close()
        await local.close()


async def test_local_to_seaweedfs_is_byte_identical(
    seaweedfs: S3Server, tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    local, target = LocalStorage(tmp_path / "local"), _s3(seaweedfs)
    await local.create_bucket("mine")
    bucket = seaweedfs.new_bucket("dst")
    try:
        tree = await _fill(local, "mine", "", SEAWEED_KEYS)
        finished = await copy_job(
            await new_transfer(db_sessions),
            source=local,
            source_bucket="mine",
            source_prefix="",
            target=target,
            target_bucket=bucket,
            target_prefix="moved/",
            store=_store(db_sessions, "push-a"),
            config=CONFIG,
            egress=LOOPBACK,
        )
        assert finished is not None and finished.status == "completed", finished and finished.meta
        await _check_arrived(target, bucket, "moved/", tree)
    finally:
        await local.close()
        await target.close()


async def test_local_to_local_copies_every_tricky_key_server_side(
    tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    local = LocalStorage(tmp_path / "local")
    await local.create_bucket("from")
    await local.create_bucket("into")
    try:
        tree = await _fill(local, "from", "", TRICKY_KEYS)
        finished = await copy_job(
            await new_transfer(db_sessions),
            source=local,
            source_bucket="from",
            source_prefix="",
            target=local,
            target_bucket="into",
            target_prefix="",
            store=_store(db_sessions, "local-a"),
            config=CONFIG,
        )
        assert finished is not None and finished.status == "completed", finished and finished.meta
        await _check_arrived(local, "into", "", tree)
        report = (finished.meta or {})["report"]
        assert report["server_side_copy"] is True
    finally:
        await local.close()


async def test_an_interrupted_multipart_copy_into_local_resumes_without_resending(
    seaweedfs: S3Server, tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source, local = _s3(seaweedfs), LocalStorage(tmp_path / "local")
    bucket = seaweedfs.new_bucket("src")
    await local.create_bucket("mine")
    body = os.urandom(4 * PART + 7)
    await source.put(bucket, "big.bin", stream_of(body), size=len(body))
    stop = asyncio.Event()

    class StopAtThirdPart:
        def __init__(self) -> None:
            self.offsets: list[int] = []

        def read(self, key: str, offset: int, data: memoryview) -> None:
            self.offsets.append(offset)
            if offset == 2 * PART:
                stop.set()  # as a worker told to stop (or killed) mid-object

        async def finished(self, key: str, size: int) -> None:
            pass

    request_id = await new_transfer(db_sessions)
    store = _store(db_sessions, "import-c")
    ends = {
        "source": source,
        "source_bucket": bucket,
        "source_prefix": "",
        "target": local,
        "target_bucket": "mine",
        "target_prefix": "",
        "store": store,
        "config": IN_ORDER,
        "egress": LOOPBACK,
    }
    try:
        first = StopAtThirdPart()
        assert await copy_job(request_id, observer=first, stop=stop, **ends) is None
        # Nothing half-written is visible; the upload and its first parts are kept.
        assert (await local.list("mine")).objects == []
        (item,) = await store.items.open_uploads(request_id, mine_only=False)
        assert item.upload_id is not None
        kept = await local.list_parts("mine", "big.bin", item.upload_id)
        assert [p.part_number for p in kept][:2] == [1, 2]

        second = StopAtThirdPart()
        finished = await copy_job(request_id, observer=second, **ends)
        assert finished is not None and finished.status == "completed", finished and finished.meta
        # The parts stored before the interruption were not read (nor sent) again.
        assert 0 not in second.offsets and PART not in second.offsets
        assert await read_object(local, "mine", "big.bin") == body
    finally:
        await source.close()
        await local.close()
