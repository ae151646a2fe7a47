"""PostgreSQL restarts while the served worker copies and exports: the work still finishes.

Each test gets a private PostgreSQL cluster (tests/fixtures/private_postgres.py; the shared
server is never restarted) and a real `ferry serve` on it, with the local storage backend
holding 200 small objects and one of 50 MiB. In the middle of a transfer (to SeaweedFS, through
the fault proxy, which counts every write on the wire) and of a tar.gz archive export, the
cluster is stopped (fast: every connection is cut), kept down two seconds and started again.
The transfer must complete with every object written exactly once; the export must become
ready, its archive complete and matching its manifest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tarfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import bagit
import pytest

from tests.fixtures.private_postgres import PrivatePostgres
from tests.fixtures.servers import S3Server
from tests.support.faultproxy import FaultProxy
from tests.support.ferry import Ferry, http, seed_local_bucket

T = TypeVar("T")
MiB = 1024 * 1024
BIG = "big/50MiB.bin"
EMAIL = "pg-faults@example.com"
DEADLINE = 90.0  # seconds for the work to finish after the restart


class Loop:
    """An event loop in a thread, for the fault proxy."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Installation:
    ferry: Ferry
    pg: PrivatePostgres
    api_key: str
    files: dict[str, bytes]

    def request(self, request_id: str) -> dict[str, Any]:
        status, answer = http(
            "GET", f"{self.ferry.api_url}/api/portability/requests/{request_id}", token=self.api_key
        )
        assert status == 200, answer
        return dict(answer)

    def wait(self, request_id: str, states: tuple[str, ...]) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                found = self.request(request_id)
            except (OSError, AssertionError):
                found = {"status": "?"}  # the API may answer 503 while the database restarts
            if found["status"] in states:
                return found
            time.sleep(0.2)
        raise AssertionError(
            f"request {request_id} did not reach {states} in {DEADLINE:.0f}s: {found}\n"
            f"{self.ferry.log()[-4000:]}"
        )


@pytest.fixture
def installation(private_postgres: PrivatePostgres, tmp_path: Path) -> Iterator[Installation]:
    ferry = Ferry.create(
        tmp_path / "ferry", private_postgres.url, egress_allowed_cidrs="127.0.0.0/8"
    )
    files = {f"small/{i:03d}.dat": os.urandom(1000 + i * 13) for i in range(200)}
    files[BIG] = os.urandom(50 * MiB)

    seed_local_bucket(Path(ferry.env["FERRY_STORAGE_ROOT"]), "pg-faults", files)
    user = ferry.create_user(EMAIL)
    ferry.run("buckets", "create", "pg-faults", "--owner", EMAIL, "--backend-bucket", "pg-faults")
    ferry.serve()
    try:
        yield Installation(ferry, private_postgres, user["api_key"], files)
    finally:
        ferry.stop()


@pytest.fixture
def proxy_to(seaweedfs_b: S3Server) -> Iterator[FaultProxy]:
    loop = Loop()
    proxy = loop.call(FaultProxy(seaweedfs_b.endpoint_url).start())
    try:
        yield proxy
    finally:
        loop.call(proxy.stop())
        loop.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_postgres_restart_mid_transfer_loses_nothing_and_copies_nothing_twice(
    installation: Installation, seaweedfs_b: S3Server, proxy_to: FaultProxy
) -> None:
    inst, proxy = installation, proxy_to
    target = seaweedfs_b.new_bucket("pg-restart")
    status, created = http(
        "POST",
        inst.ferry.api_url + "/api/portability/export",
        body={
            "request_type": "transfer",
            "source": {"bucket": "pg-faults"},
            "destination": {
                "endpoint_url": proxy.url,
                "bucket": target,
                "prefix": "moved/",
                "access_key_id": seaweedfs_b.access_key_id,
                "secret_access_key": seaweedfs_b.secret_access_key,
            },
        },
        token=inst.api_key,
    )
    assert status == 202, created
    deadline = time.monotonic() + DEADLINE
    while proxy.count("PutObject") < 20:
        assert time.monotonic() < deadline, "the transfer did not start"
        time.sleep(0.02)
    written_before = proxy.count("PutObject") + proxy.count("CompleteMultipartUpload")
    inst.pg.restart(down_seconds=2)
    assert written_before < len(inst.files), "the transfer was over before the restart"

    done = inst.wait(created["id"], ("completed", "failed", "cancelled"))
    assert done["status"] == "completed", done["metadata"].get("error")

    # On the wire: every object written once, none twice, none lost.
    stored: Counter[str] = Counter()
    for seen in proxy.seen:
        if seen.status == 200 and seen.operation in ("PutObject", "CompleteMultipartUpload"):
            stored[seen.key] += 1
    assert set(stored) == {f"moved/{key}" for key in inst.files}
    twice = {key: n for key, n in stored.items() if n != 1}
    assert not twice, f"written more than once: {twice}"
    # And in the target, byte for byte.
    client = seaweedfs_b.client()
    for key, data in inst.files.items():
        body = client.get_object(Bucket=target, Key=f"moved/{key}")["Body"].read()
        assert _sha(body) == _sha(data), key


def test_postgres_restart_mid_export_still_delivers_a_complete_archive(
    installation: Installation, tmp_path: Path
) -> None:
    inst = installation
    status, created = http(
        "POST",
        inst.ferry.api_url + "/api/portability/export",
        body={"format": "archive", "archive_format": "tar.gz", "include": ["personal", "files"]},
        token=inst.api_key,
    )
    assert status == 202, created
    deadline = time.monotonic() + DEADLINE
    while (state := inst.request(created["id"])["status"]) == "pending":
        assert time.monotonic() < deadline, "the export was never claimed"
        time.sleep(0.02)
    assert state == "processing", "the export was over before the restart"
    inst.pg.restart(down_seconds=2)

    done = inst.wait(created["id"], ("ready", "failed"))
    assert done["status"] == "ready", done["metadata"].get("error")
    meta = done["metadata"]
    assert meta["report"]["objects"] == len(inst.files)
    with urllib.request.urlopen(meta["manifest_url"], timeout=30) as answer:  # noqa: S310
        manifest = json.loads(answer.read())
    entries = {e["key"]: e for e in manifest["objects"]}
    assert set(entries) == set(inst.files)
    extracted: dict[str, Path] = {}
    for part in meta["parts"]:
        archive = tmp_path / part["name"]
        with urllib.request.urlopen(part["url"], timeout=60) as answer:  # noqa: S310
            archive.write_bytes(answer.read())
        assert _sha(archive.read_bytes()) == part["sha256"]
        into = tmp_path / f"x-{part['name']}"
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
        [bag] = list(into.iterdir())
        bagit.Bag(str(bag)).validate()  # checksums, completeness, Payload-Oxum
        extracted.update({f"{part['name']}/{p.relative_to(into)}": p for p in into.rglob("*")})
    for key, data in inst.files.items():
        entry = entries[key]
        path = extracted[f"{meta['parts'][entry['part'] - 1]['name']}/{entry['path']}"]
        assert entry["sha256"] == _sha(data) == _sha(path.read_bytes()), key
