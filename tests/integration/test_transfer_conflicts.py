"""`on_conflict`: what the copy engine does with a target key that already holds an object.

The same source (one object the target already has, one the target has with other bytes, one
new, one multipart) is copied under each rule into the local backend and into SeaweedFS; the
target is then read back, and the report's `conflicts` checked against what happened.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.types import utcnow
from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.objects import read_object, stream_of
from tests.support.transfer_worker import new_transfer
from transfer import TransferConfig, copy_job
from transfer.exceptions import InvalidDestination
from transfer.spec import Target
from transfer.store import JobStore

MiB = 1024 * 1024
CONFIG = TransferConfig(
    part_size=5 * MiB, multipart_threshold=5 * MiB, heartbeat_seconds=1, lease_seconds=10
)
SOURCE = {
    "same.txt": b"the same on both sides",
    "differs.txt": b"the source's version",
    "new.txt": b"only at the source",
    "big.bin": os.urandom(11 * MiB + 7),
}
THEIRS = b"the target's own version, a different length"


async def _put(storage: Storage, bucket: str, key: str, data: bytes) -> None:
    await storage.put(bucket, key, stream_of(data), size=len(data))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _run_rules(
    source: Storage,
    source_bucket: str,
    target: Storage,
    target_bucket: str,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    for key, data in SOURCE.items():
        await _put(source, source_bucket, key, data)
    reports = {}
    for rule in ("skip_identical", "overwrite", "fail"):
        prefix = f"{rule}/"
        await _put(target, target_bucket, prefix + "same.txt", SOURCE["same.txt"])
        await _put(target, target_bucket, prefix + "differs.txt", THEIRS)
        await _put(target, target_bucket, prefix + "unrelated.txt", b"not in the source")
        finished = await copy_job(
            await new_transfer(db_sessions),
            source=source,
            source_bucket=source_bucket,
            source_prefix="",
            target=target,
            target_bucket=target_bucket,
            target_prefix=prefix,
            store=JobStore(db_sessions, owner=f"conflicts-{rule}", lease_seconds=10, clock=utcnow),
            config=CONFIG,
            on_conflict=rule,
            egress=LOOPBACK,
        )
        assert finished is not None, rule
        reports[rule] = (finished.status, (finished.meta or {})["report"], finished.meta)
        arrived = {k: _sha(await read_object(target, target_bucket, prefix + k)) for k in SOURCE}
        kept_theirs = rule == "fail"
        expected = {k: _sha(v) for k, v in SOURCE.items()}
        if kept_theirs:
            expected["differs.txt"] = _sha(THEIRS)
        assert arrived == expected, rule
        unrelated = await read_object(target, target_bucket, prefix + "unrelated.txt")
        assert unrelated == b"not in the source"

    status, report, _ = reports["skip_identical"]
    assert status == "completed"
    assert report["on_conflict"] == "skip_identical"
    assert (report["objects"]["copied"], report["objects"]["skipped"]) == (3, 1)
    assert report["conflicts"] == {
        "replaced": 1,
        "kept": 0,
        "objects": [
            {
                "key": "differs.txt",
                "target_key": "skip_identical/differs.txt",
                "outcome": "replaced",
            }
        ],
        "truncated": False,
    }
    by_key = {i["key"]: i for i in report["items"]}
    assert by_key["differs.txt"]["conflict"] == "replaced"
    assert "conflict" not in by_key["same.txt"] and by_key["same.txt"]["state"] == "skipped"

    status, report, _ = reports["overwrite"]
    assert status == "completed"
    # The identical object is written again; only the different one was a conflict.
    assert (report["objects"]["copied"], report["objects"]["skipped"]) == (4, 0)
    assert (report["conflicts"]["replaced"], report["conflicts"]["kept"]) == (1, 0)

    status, report, meta = reports["fail"]
    assert status == "failed"
    assert (report["objects"]["copied"], report["objects"]["skipped"]) == (2, 1)
    assert report["objects"]["failed"] == 1
    assert report["conflicts"]["kept"] == 1 and report["conflicts"]["replaced"] == 0
    assert report["conflicts"]["objects"][0]["target_key"] == "fail/differs.txt"
    (failure,) = report["failures"]
    assert failure["key"] == "differs.txt" and "on_conflict: fail" in failure["reason"]
    assert "differs.txt" in meta["error"]


async def test_conflict_rules_into_the_local_backend(
    tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source, target = LocalStorage(tmp_path / "old"), LocalStorage(tmp_path / "ferry")
    await source.create_bucket("theirs")
    await target.create_bucket("mine")
    try:
        await _run_rules(source, "theirs", target, "mine", db_sessions)
    finally:
        await source.close()
        await target.close()


async def test_conflict_rules_into_seaweedfs(
    seaweedfs: S3Server, tmp_path: Path, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source = LocalStorage(tmp_path / "old")
    target = S3Storage(
        seaweedfs.endpoint_url,
        seaweedfs.region,
        seaweedfs.access_key_id,
        seaweedfs.secret_access_key,
    )
    await source.create_bucket("theirs")
    try:
        await _run_rules(source, "theirs", target, seaweedfs.new_bucket("mine"), db_sessions)
    finally:
        await source.close()
        await target.close()


def test_an_unknown_rule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidDestination, match="on_conflict 'merge' is not one of"):
        Target(LocalStorage(tmp_path), "mine", on_conflict="merge")
