"""The copy engine behind a fault-injecting proxy: corruption, lies, throttling, resets, 403s,
and server-side copies on one endpoint."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.local import LocalStorage
from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.faultproxy import FaultProxy, Seen
from tests.support.transfer_worker import End, new_transfer, resolver, run_until_final, s3_end
from transfer import TransferConfig, TransferWorker
from transfer.checksums import b64
from transfer.multipart import PROBE_PART
from transfer.store import ItemRows

MiB = 1024 * 1024
QUICK = {
    "part_size": 5 * MiB,
    "multipart_threshold": 5 * MiB,
    "heartbeat_seconds": 1,
    "lease_seconds": 10,
    "backoff_base": 0.01,
    "backoff_cap": 0.05,
}


def _fill(server: S3Server, objects: dict[str, bytes]) -> str:
    bucket = server.new_bucket("src")
    client = server.client()
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


_READERS: dict[str, Any] = {}


def _read(server: S3Server, bucket: str, key: str) -> bytes:
    # One boto3 client per server: building one costs a noticeable fraction of a second.
    reader = _READERS.setdefault(server.endpoint_url, server.client())
    return bytes(reader.get_object(Bucket=bucket, Key=key)["Body"].read())


def _items(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in meta["report"]["items"]}


@pytest.mark.parametrize("target_name", ["seaweedfs_b", "moto_server"])
async def test_corrupted_parts_and_wrong_etags_are_retried_or_failed_never_verified(
    request: pytest.FixtureRequest,
    target_name: str,
    seaweedfs: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    target: S3Server = request.getfixturevalue(target_name)
    objects = {
        "once.bin": os.urandom(12 * MiB),  # part 2 corrupted on its first trip only
        "always.bin": os.urandom(7 * MiB),  # part 1 corrupted on every trip
        "etag-lie.bin": os.urandom(1000),  # the target's answers carry a wrong ETag
        "fine.txt": b"nothing happens to me",
    }
    bucket = _fill(seaweedfs, objects)
    destination = target.new_bucket("dst")

    def part(key: str, number: int) -> Any:
        return lambda s: s.operation == "UploadPart" and s.key == key and s.part_number == number

    async with FaultProxy(target.endpoint_url) as proxy:
        proxy.add("flip", part("once.bin", 2), times=1)
        proxy.add("flip", part("always.bin", 1))
        # Every answer about this key carries a wrong ETag (PUT and HEAD alike): were the HEAD
        # honest, the retry would find the object intact and skip it as identical.
        proxy.add("wrong-etag", lambda s: s.key == "etag-lie.bin")
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, bucket), s3_end(target, destination, endpoint_url=proxy.url)
            ),
            worker_id="faults",
            egress=LOOPBACK,
            config=TransferConfig(**QUICK, request_attempts=3, item_attempts=2),
        )
        done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

        assert done.status == "failed"
        meta = done.meta or {}
        items = _items(meta)
        for key in ("always.bin", "etag-lie.bin"):
            assert items[key]["state"] == "failed", repr(items[key])
            assert items[key]["verified"] is None
            assert items[key]["error"].startswith("verification-failed"), items[key]["error"]
        assert {f["key"] for f in meta["report"]["failures"]} == {"always.bin", "etag-lie.bin"}
        assert "2 of 4 objects failed" in meta["error"]
        # SeaweedFS refused the checksum probe: it checks each part's CRC32C, so the parts
        # went without an MD5 and the flipped byte was refused on arrival. moto took the
        # probe: the parts carried Content-MD5 and their ETags were compared (moto answers no
        # checksum for the completed object).
        checks = target_name == "seaweedfs_b"
        assert items["once.bin"]["state"] == items["fine.txt"]["state"] == "done"
        assert items["once.bin"]["verified"] == ("checksum-crc32c" if checks else "etag")
        assert items["fine.txt"]["verified"].startswith("etag")
        for key in ("once.bin", "fine.txt"):
            assert _sha(_read(target, destination, key)) == _sha(objects[key])
        parts = [s for s in proxy.seen if s.operation == "UploadPart"]
        probes = [s for s in parts if s.part_number == PROBE_PART]
        # One probe per run of the job by a worker (the retried objects took more than one).
        assert probes and {(s.size, s.status) for s in probes} == {(1, 400 if checks else 200)}
        assert all((s.content_md5 is None) == checks for s in parts if s not in probes)
        # The corrupted part was sent again, and only it.
        sent = [s.part_number for s in parts if s.key == "once.bin" and s not in probes]
        assert sorted(sent) == [1, 2, 2, 3]
        # The persistent corruption: 3 tries per attempt, 2 attempts of the object.
        assert proxy.count("UploadPart", "always.bin") >= 6
        assert target.open_uploads(destination) == []


async def test_a_source_etag_that_is_not_the_md5_of_its_bytes_is_caught_and_they_are_hashed(
    tmp_path: Path,
    seaweedfs_b: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Single PUTs carry the source's ETag as Content-MD5 instead of an MD5 of our own. S3
    # gives objects encrypted with SSE-KMS or SSE-C hex ETags that are not MD5s; one such
    # ETag is written into the local backend's index here, under the first key copied.
    objects = {"a-liar.bin": os.urandom(300_000)}
    objects.update({f"b/{i}.txt": os.urandom(1000 + i) for i in range(5)})
    root = tmp_path / "source"
    storage = LocalStorage(root)
    await storage.create_bucket("src")
    for key, body in objects.items():
        await storage.put("src", key, _once(body), size=len(body))
    await storage.close()
    false_etag = "0123456789abcdef0123456789abcdef"
    with contextlib.closing(sqlite3.connect(root / "src" / "index.sqlite3")) as index, index:
        index.execute("UPDATE objects SET etag = ? WHERE key = ?", (false_etag, b"a-liar.bin"))
    destination = seaweedfs_b.new_bucket("dst")

    async with FaultProxy(seaweedfs_b.endpoint_url) as proxy:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                End(bucket="src", local_root=str(root)),
                s3_end(seaweedfs_b, destination, endpoint_url=proxy.url),
            ),
            worker_id="source-etag",
            egress=LOOPBACK,
            config=TransferConfig(**QUICK, object_concurrency=1),
        )
        with caplog.at_level(logging.WARNING, logger="transfer"):
            done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

    assert done.status == "completed", done.meta
    items = _items(done.meta or {})
    for key, body in objects.items():
        assert items[key]["verified"] == "etag+crc32c"
        assert _sha(_read(seaweedfs_b, destination, key)) == _sha(body)
    puts = [s for s in proxy.seen if s.operation == "PutObject"]
    # The first PUT carried the false ETag and the target refused it (BadDigest); the second
    # carried the MD5 of the bytes. The other objects were then hashed here, one PUT each.
    liar = [s for s in puts if s.key == "a-liar.bin"]
    assert [s.content_md5 for s in liar] == [
        b64(bytes.fromhex(false_etag)),
        _md5(objects["a-liar.bin"]),
    ]
    assert liar[0].status == 400 and liar[1].status == 200
    assert sorted((s.key, s.content_md5) for s in puts if s.key != "a-liar.bin") == sorted(
        (key, _md5(body)) for key, body in objects.items() if key != "a-liar.bin"
    )
    assert "is not the MD5 of its bytes" in caplog.text


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _md5(body: bytes) -> str:
    return b64(hashlib.md5(body, usedforsecurity=False).digest())


async def test_slowdown_and_resets_on_10_percent_still_complete_and_a_403_fails_at_once(
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    objects = {f"many/{i:03d}.txt": os.urandom(200 + i) for i in range(60)}
    objects["many/large.bin"] = os.urandom(12 * MiB)
    objects["denied/secret.txt"] = b"the target refuses this key"
    bucket = _fill(seaweedfs, objects)
    destination = seaweedfs_b.new_bucket("dst")

    async with FaultProxy(seaweedfs_b.endpoint_url, seed=7) as proxy:
        proxy.add("forbidden", lambda s: s.key == "denied/secret.txt")

        def ordinary(s: Seen) -> bool:
            return s.key != "denied/secret.txt"

        proxy.add_random("slowdown", 0.05, ordinary)
        proxy.add_random("reset", 0.05, ordinary)
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, bucket), s3_end(seaweedfs_b, destination, endpoint_url=proxy.url)
            ),
            worker_id="flaky",
            egress=LOOPBACK,
            config=TransferConfig(**QUICK),
        )
        done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

    meta = done.meta or {}
    report = meta["report"]
    assert done.status == "failed"
    assert report["objects"]["copied"] == len(objects) - 1
    assert [f["key"] for f in report["failures"]] == ["denied/secret.txt"]
    assert report["failures"][0]["reason"].startswith("access-denied")
    assert "403" in report["failures"][0]["reason"]
    assert proxy.count(key="denied/secret.txt") == 1  # not retried
    faults = [s for s in proxy.seen if s.action in ("slowdown", "reset")]
    assert len(faults) >= 5
    # Every 503 was waited out and tried again by the engine (aiohttp itself may resend an
    # idempotent request on a reset keep-alive connection, so resets are not all counted).
    assert report["retries"] >= sum(1 for s in faults if s.action == "slowdown") > 0
    for key, body in objects.items():
        if key != "denied/secret.txt":
            assert _sha(_read(seaweedfs_b, destination, key)) == _sha(body), key
    assert seaweedfs_b.open_uploads(destination) == []


async def test_same_endpoint_copies_server_side_pinned_and_verified(
    seaweedfs: S3Server, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    objects = {"big.bin": os.urandom(12 * MiB), "small.txt": b"copied by the server"}
    bucket = _fill(seaweedfs, objects)
    destination = seaweedfs.new_bucket("dst")
    async with FaultProxy(seaweedfs.endpoint_url) as proxy:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, bucket, endpoint_url=proxy.url),
                s3_end(seaweedfs, destination, "copy/", endpoint_url=proxy.url),
            ),
            worker_id="same",
            egress=LOOPBACK,
            config=TransferConfig(**QUICK),
        )
        done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

    assert done.status == "completed", (done.meta or {}).get("error")
    items = _items(done.meta or {})
    assert items["big.bin"]["verified"] == "server-copy+md5"
    assert items["small.txt"]["verified"] == "server-copy+etag"
    ops = proxy.operations()
    assert ops["UploadPartCopy"] == 3
    assert ops["CopyObject"] == 1
    assert ops["UploadPart"] == 0 and ops["PutObject"] == 0
    for key, body in objects.items():
        assert _sha(_read(seaweedfs, destination, "copy/" + key)) == _sha(body)


@pytest.mark.parametrize("target_name", ["seaweedfs_b", "moto_server"])
async def test_a_worker_that_dies_right_after_completing_an_upload_is_not_made_to_send_it_again(
    request: pytest.FixtureRequest,
    target_name: str,
    seaweedfs: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The window between CompleteMultipartUpload and recording it: the first record of the
    # finished object fails as a crash there would. The next try finds the upload gone and
    # the object complete, and checks it against the parts it stored: on SeaweedFS (which
    # checks part checksums, so the parts have no MD5) by the composite CRC32C, on moto by
    # the multipart ETag.
    target: S3Server = request.getfixturevalue(target_name)
    body = os.urandom(11 * MiB)
    bucket = _fill(seaweedfs, {"big.bin": body})
    destination = target.new_bucket("dst")
    real_record_done = ItemRows.record_done
    crashes: list[str] = []

    async def record_done_once_fails(self: ItemRows, item: Any, **kwargs: Any) -> None:
        if not crashes:
            crashes.append(item.key)
            raise RuntimeError("the worker died here")
        await real_record_done(self, item, **kwargs)

    monkeypatch.setattr(ItemRows, "record_done", record_done_once_fails)
    async with FaultProxy(target.endpoint_url) as proxy:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, bucket), s3_end(target, destination, endpoint_url=proxy.url)
            ),
            worker_id="dies-after-complete",
            egress=LOOPBACK,
            config=TransferConfig(**QUICK),
        )
        done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

    assert crashes == ["big.bin"]
    assert done.status == "completed", done.meta
    item = _items(done.meta or {})["big.bin"]
    assert item["verified"] == ("checksum-crc32c" if target_name == "seaweedfs_b" else "etag")
    assert proxy.count("CreateMultipartUpload") == proxy.count("CompleteMultipartUpload") == 1
    sent = [s.part_number for s in proxy.seen if s.operation == "UploadPart"]
    assert sorted(n for n in sent if n != PROBE_PART) == [1, 2, 3]
    assert _sha(_read(target, destination, "big.bin")) == _sha(body)
