"""The copy engine against real servers: every byte and header arrives, a rerun copies nothing.

Source: SeaweedFS A. Targets: SeaweedFS B and moto's server. What arrived is read back with
an independent client (boto3) and compared by SHA-256 and by its headers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.transfer_worker import new_transfer, resolver, run_until_final, s3_end
from transfer import TransferConfig, TransferWorker

MiB = 1024 * 1024
CONFIG = TransferConfig(
    part_size=5 * MiB,
    multipart_threshold=5 * MiB,
    heartbeat_seconds=1,
    lease_seconds=10,
    progress_seconds=0.5,
)
SIZES = {"empty": 0, "one": 1, "five-minus": 5 * MiB - 1, "five": 5 * MiB, "five-plus": 5 * MiB + 1}
SMALL = 1000
FULL_HEADERS = {
    "ContentType": "text/plain; charset=utf-8",
    "ContentEncoding": "identity",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "CacheControl": "max-age=3600, private",
    "Expires": "Wed, 21 Oct 2037 07:28:00 GMT",
}
RAW_HEADERS = {
    "ContentType": "content-type",
    "ContentEncoding": "content-encoding",
    "ContentDisposition": "content-disposition",
    "CacheControl": "cache-control",
    "Expires": "expires",
}


def tricky_key(i: int) -> str:
    # Spaces, unicode, + % = & and friends; nothing SeaweedFS rewrites (no \, //, . segments).
    names = [
        f"small/{i:04d} with space.txt",
        f"small/ünï-cødé €/{i:04d}-日本語.bin",
        f"small/plus+percent%25 eq=and&{i:04d}",
        f"small/brackets [{i:04d}] (x) {{y}} ~!$'@,;.dat",
    ]
    return names[i % len(names)]


@dataclass
class SourceData:
    server: S3Server
    bucket: str
    objects: dict[str, tuple[int, str]] = field(default_factory=dict)  # key -> size, sha256
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # key -> expected headers
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)


def _put(data: SourceData, key: str, body: bytes, **extra: Any) -> None:
    data.server.client().put_object(Bucket=data.bucket, Key=key, Body=body, **extra)


@pytest.fixture(scope="module")
def source(seaweedfs: S3Server) -> Iterator[SourceData]:
    data = SourceData(seaweedfs, seaweedfs.new_bucket("src"))
    client = seaweedfs.client()
    uploads: list[tuple[str, bytes, dict[str, Any]]] = []
    for name, size in SIZES.items():
        uploads.append(
            (f"sizes/{name}", os.urandom(size), {"ContentType": "application/x-" + name})
        )
    for i in range(SMALL):
        extra: dict[str, Any] = {"Metadata": {"index": str(i), "origin": "ferry-test"}}
        if i % 10 == 0:
            extra.update(FULL_HEADERS)
        uploads.append((tricky_key(i), os.urandom(1 + i % 3000), extra))
    for key, body, extra in uploads:
        data.objects[key] = (len(body), hashlib.sha256(body).hexdigest())
        data.headers[key] = {RAW_HEADERS[k]: v for k, v in extra.items() if k in RAW_HEADERS}
        data.metadata[key] = extra.get("Metadata", {})

    def put(upload: tuple[str, bytes, dict[str, Any]]) -> None:
        key, body, extra = upload
        client.put_object(Bucket=data.bucket, Key=key, Body=body, **extra)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, uploads))
    yield data


def _read_back(server: S3Server, bucket: str, prefix: str, keys: list[str]) -> dict[str, Any]:
    client = server.client()

    def one(key: str) -> tuple[str, int, str, dict[str, str], dict[str, str]]:
        answer = client.get_object(Bucket=bucket, Key=prefix + key)
        body = answer["Body"].read()
        raw = answer["ResponseMetadata"]["HTTPHeaders"]
        return key, len(body), hashlib.sha256(body).hexdigest(), raw, answer["Metadata"]

    with ThreadPoolExecutor(16) as pool:
        return {r[0]: r[1:] for r in pool.map(one, keys)}


@pytest.mark.parametrize("target_name", ["seaweedfs_b", "moto_server"])
async def test_objects_and_metadata_arrive_identical_and_a_rerun_copies_nothing(
    request: pytest.FixtureRequest,
    target_name: str,
    source: SourceData,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    target: S3Server = request.getfixturevalue(target_name)
    bucket = target.new_bucket("dst")
    worker = TransferWorker(
        db_sessions,
        resolve=resolver(s3_end(source.server, source.bucket), s3_end(target, bucket, "moved/")),
        worker_id=f"test-{target_name}",
        egress=LOOPBACK,
        config=CONFIG,
    )
    request_id = await new_transfer(db_sessions)
    done = await run_until_final(worker, db_sessions, request_id)

    assert done.status == "completed", (done.meta or {}).get("error")
    meta = done.meta or {}
    report = meta["report"]
    total = sum(size for size, _ in source.objects.values())
    assert report["objects"] == {
        "total": len(source.objects),
        "copied": len(source.objects),
        "skipped": 0,
        "failed": 0,
        "not_copied": 0,
    }
    assert report["bytes"] == {"total": total, "copied": total, "skipped": 0}
    assert report["failures"] == []
    assert sum(report["verified"].values()) == len(source.objects)
    assert "size" not in report["verified"]  # every object was checked by ETag or checksum
    assert report["items_truncated"] is True  # 1,005 objects: counted, not listed
    assert meta["progress"]["bytes_done"] == total
    assert meta["progress"]["objects_done"] == len(source.objects)
    assert done.completed_at is not None

    arrived = _read_back(target, bucket, "moved/", list(source.objects))
    for key, (size, digest) in source.objects.items():
        got_size, got_digest, raw, metadata = arrived[key]
        assert (got_size, got_digest) == (size, digest), key
        assert metadata == source.metadata[key], key
        for name, value in source.headers[key].items():
            assert raw.get(name) == value, (key, name)
    assert target.open_uploads(bucket) == []

    again = await new_transfer(db_sessions)
    rerun = await run_until_final(worker, db_sessions, again)
    assert rerun.status == "completed"
    rerun_report = (rerun.meta or {})["report"]
    assert rerun_report["bytes"] == {"total": total, "copied": 0, "skipped": total}
    assert rerun_report["objects"]["skipped"] == len(source.objects)
    assert set(rerun_report["verified"]) <= {"skip:etag", "skip:ledger"}


async def test_a_100_mib_object_arrives_identical(
    seaweedfs: S3Server, seaweedfs_b: S3Server, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    source_bucket = seaweedfs.new_bucket("big")
    body = os.urandom(100 * MiB)
    seaweedfs.client().put_object(
        Bucket=source_bucket, Key="archive/big.bin", Body=body, Metadata={"kind": "big"}
    )
    expected = hashlib.sha256(body).hexdigest()
    del body
    bucket = seaweedfs_b.new_bucket("dst")
    worker = TransferWorker(
        db_sessions,
        resolve=resolver(s3_end(seaweedfs, source_bucket, "archive/"), s3_end(seaweedfs_b, bucket)),
        worker_id="big",
        egress=LOOPBACK,
        config=TransferConfig(part_size=8 * MiB, multipart_threshold=8 * MiB, verify="full"),
    )
    request_id = await new_transfer(db_sessions)
    done = await run_until_final(worker, db_sessions, request_id)
    assert done.status == "completed", (done.meta or {}).get("error")
    report = (done.meta or {})["report"]
    assert report["items"][0]["verified"] == "etag+crc32c+full"
    answer = seaweedfs_b.client().get_object(Bucket=bucket, Key="big.bin")
    digest = hashlib.sha256()
    for chunk in answer["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == expected
    assert answer["Metadata"] == {"kind": "big"}
    assert answer["ETag"].strip('"').endswith("-13")  # 100 MiB in 8 MiB parts
