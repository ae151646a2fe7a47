"""Import end to end: one Ferry hands a user's bucket to another, which imports it verified.

Two installations, each a real `ferry serve` (API, gateway, workers) with its own database:
A on one SeaweedFS, B on another SeaweedFS (then B on the embedded default: SQLite and the
local backend). alice at A asks for an `s3` export with token-free keys; its answer carries
the hand-off document, which linked the manifest A writes. alice at B imports with that one
file (`ferry import start --handoff`). B pulls through A's gateway; what lands in B is read
back independently (straight from B's SeaweedFS, or through B's own gateway with boto3) and
compared byte for byte; B's report is verified against A's manifest, and A's pull receipt
shows every manifest object fetched in full.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from botocore.config import Config

from tests.fixtures.database import fresh_postgres_database, postgres_server_url
from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK_ENV
from tests.support.ferry import Ferry, http

MiB = 1024 * 1024
BACKEND_PREFIX = "tenants/alice/"


def _files() -> dict[str, bytes]:
    files = {f"notes/{i:02d}.txt": os.urandom(1000 + 37 * i) for i in range(12)}
    files["video/big.bin"] = os.urandom(21 * MiB)  # several parts at the engine's part size
    files["odd names/ü + spaces & more.txt"] = b"tricky" * 100
    return files


def _database(tmp: Path, name: str) -> Iterator[str]:
    server = postgres_server_url()
    if server is None:
        yield f"sqlite+aiosqlite:///{tmp / (name + '.db')}"
        return
    with fresh_postgres_database(server) as url:
        yield url


def _s3_settings(server: S3Server) -> dict[str, str]:
    return {
        "storage_backend": "s3",
        "storage_endpoint_url": server.endpoint_url,
        "storage_access_key_id": server.access_key_id,
        "storage_secret_access_key": server.secret_access_key,
    }


def _install(ferry: Ferry, bucket: str, backend_bucket: str | None) -> str:
    """Migrate, create alice and her bucket; return alice's API key."""
    ferry.env.update(LOOPBACK_ENV)
    ferry.run("migrate")
    key = ferry.create_user("alice@example.com")["api_key"]
    args = ["buckets", "create", bucket, "--owner", "alice@example.com"]
    if backend_bucket:
        args += ["--backend-bucket", backend_bucket, "--backend-prefix", BACKEND_PREFIX]
    ferry.run(*args)
    return key


@pytest.fixture
def source_a(
    tmp_path: Path, seaweedfs: S3Server
) -> Iterator[tuple[Ferry, str, str, dict[str, bytes]]]:
    """Ferry A on SeaweedFS with alice's bucket `photos` filled."""
    for url in _database(tmp_path, "a"):
        ferry = Ferry.create(tmp_path / "a", url, **_s3_settings(seaweedfs))
        backend = seaweedfs.new_bucket("a")
        key = _install(ferry, "photos", backend)
        files = _files()
        client = seaweedfs.client()
        for name, body in files.items():
            client.put_object(Bucket=backend, Key=BACKEND_PREFIX + name, Body=body)
        ferry.serve()
        try:
            yield ferry, key, backend, files
        finally:
            ferry.stop()


def _handoff(a: Ferry, key: str, tmp_path: Path) -> tuple[str, Path]:
    """alice's s3 export at A (token-free); its hand-off file, once the manifest is written."""
    status, created = http(
        "POST",
        f"{a.api_url}/api/portability/export",
        body={"request_type": "export", "format": "s3", "session_token": False},
        token=key,
    )
    assert status == 202, created
    [credential] = created["credentials"]
    handoff = credential["handoff"]
    assert handoff["session_token"] is None and handoff["manifest_url"]
    a.wait_for_request(key, created["id"], ("ready",))
    path = tmp_path / "ferry-handoff-photos.json"
    path.write_text(json.dumps(handoff))
    return created["id"], path


def _import(b: Ferry, handoff: Path, *extra: str) -> str:
    started = b.run(
        "import",
        "start",
        "--user",
        "alice@example.com",
        "--handoff",
        str(handoff),
        "--bucket",
        "inbox",
        "--prefix",
        "from-a/",
        "--json",
        *extra,
    )
    return str(json.loads(started.stdout)["id"])


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gateway_client(b: Ferry, tmp_path: Path) -> Any:
    """boto3 on B's own gateway, with a credential B issues for alice's inbox."""
    issued = json.loads(
        b.run("creds", "issue", "--user", "alice@example.com", "--bucket", "inbox", "--json").stdout
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=b.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=issued["access_key_id"],
        aws_secret_access_key=issued["secret_access_key"],
        aws_session_token=issued.get("session_token"),
        config=Config(s3={"addressing_style": "path"}),
    )


def _check_import(b: Ferry, key: str, request_id: str, files: dict[str, bytes]) -> dict[str, Any]:
    done = b.wait_for_request(key, request_id, ("completed", "failed", "cancelled"))
    assert done["status"] == "completed", done["metadata"].get("error")
    report = done["metadata"]["report"]
    assert report["manifest"] == {
        "verified": len(files),
        "mismatched": 0,
        "missing_at_source": 0,
        "mismatches": [],
        "missing": [],
    }
    assert report["objects"]["copied"] == len(files) and report["objects"]["failed"] == 0
    return report


def _receipt_complete(a: Ferry, key: str, export_id: str, files: dict[str, bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, body = http("GET", f"{a.api_url}/api/portability/requests/{export_id}", token=key)
        receipt = body["metadata"].get("receipt") or {}
        if receipt.get("complete"):
            assert receipt["objects_fetched"] == receipt["objects_total"] == len(files)
            return
        time.sleep(0.5)
    raise AssertionError(f"A's receipt never completed: {body['metadata'].get('receipt')}")


def test_alice_moves_from_one_ferry_to_another_with_one_file(
    tmp_path: Path,
    source_a: tuple[Ferry, str, str, dict[str, bytes]],
    seaweedfs_b: S3Server,
) -> None:
    a, a_key, _, files = source_a
    export_id, handoff = _handoff(a, a_key, tmp_path)
    for url in _database(tmp_path, "b"):
        b = Ferry.create(tmp_path / "b", url, **_s3_settings(seaweedfs_b))
        inbox = seaweedfs_b.new_bucket("b")
        b_key = _install(b, "inbox", inbox)
        b.serve()
        try:
            report = _check_import(b, b_key, _import(b, handoff), files)
            # Read back straight from B's SeaweedFS, not through Ferry.
            client = seaweedfs_b.client()
            for name, body in files.items():
                got = client.get_object(Bucket=inbox, Key=f"{BACKEND_PREFIX}from-a/{name}")
                assert _sha(got["Body"].read()) == _sha(body), name
            assert report["verify"]
        finally:
            b.stop()
    _receipt_complete(a, a_key, export_id, files)


def test_an_import_into_the_embedded_default_lands_byte_identical(
    tmp_path: Path, source_a: tuple[Ferry, str, str, dict[str, bytes]]
) -> None:
    a, a_key, _, files = source_a
    _, handoff = _handoff(a, a_key, tmp_path)
    b = Ferry.create(tmp_path / "b", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    b_key = _install(b, "inbox", None)
    b.serve()
    try:
        _check_import(b, b_key, _import(b, handoff), files)
        client = _gateway_client(b, tmp_path)
        for name, body in files.items():
            got = client.get_object(Bucket="inbox", Key=f"from-a/{name}")["Body"].read()
            assert _sha(got) == _sha(body), name
    finally:
        b.stop()


def test_a_tampered_object_is_a_mismatch_and_fails_the_import(
    tmp_path: Path, source_a: tuple[Ferry, str, str, dict[str, bytes]], seaweedfs: S3Server
) -> None:
    a, a_key, backend, files = source_a
    _, handoff = _handoff(a, a_key, tmp_path)
    seaweedfs.client().put_object(
        Bucket=backend, Key=BACKEND_PREFIX + "notes/03.txt", Body=b"changed after the manifest"
    )
    b = Ferry.create(tmp_path / "b", f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    b_key = _install(b, "inbox", None)
    b.serve()
    try:
        done = b.wait_for_request(b_key, _import(b, handoff), ("completed", "failed", "cancelled"))
        assert done["status"] == "failed", done["metadata"]["report"]
        manifest = done["metadata"]["report"]["manifest"]
        assert manifest["mismatched"] == 1 and manifest["mismatches"] == ["notes/03.txt"]
        assert manifest["verified"] == len(files) - 1
        assert "manifest" in done["metadata"]["error"]
    finally:
        b.stop()


def _slow_b(tmp_path: Path) -> tuple[Ferry, str]:
    """B on the embedded default, its imports slowed to be caught in the middle."""
    b = Ferry.create(
        tmp_path / "b",
        f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        workers_bandwidth_limit=str(4 * MiB),
        workers_lease_seconds="3",
    )
    return b, _install(b, "inbox", None)


def _big_parts_stored(b: Ferry, request_id: str) -> set[int]:
    with sqlite3.connect(b.workdir.parent / "b.db") as db:
        rows = db.execute(
            "SELECT part_number FROM transfer_parts JOIN transfer_items"
            " ON transfer_items.id = transfer_parts.item_id"
            " WHERE transfer_items.request_id = ? AND transfer_items.key = 'video/big.bin'",
            (request_id.replace("-", ""),),
        ).fetchall()
    return {int(number) for (number,) in rows}


def _wait_for_bytes(b: Ferry, key: str, request_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = http("GET", f"{b.api_url}/api/portability/requests/{request_id}", token=key)
        if (body["metadata"].get("progress") or {}).get("bytes_done"):
            return
        time.sleep(0.1)
    raise AssertionError(f"the import did not start: {b.log()[-3000:]}")


def _source_reads(a: Ferry, since: datetime) -> list[str | None]:
    """The ranges of video/big.bin that A's gateway served since `since`, from A's audit."""
    url = a.env["FERRY_DATABASE_URL"].replace("+aiosqlite", "")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as db:
            return list(
                db.scalars(
                    sa.text(
                        "SELECT range FROM audit_logs WHERE action = 'GetObject'"
                        " AND key = 'video/big.bin' AND created_at > :since"
                    ),
                    {"since": since},
                )
            )
    finally:
        engine.dispose()


def test_a_killed_import_resumes_and_a_revoked_source_fails_the_next(
    tmp_path: Path, source_a: tuple[Ferry, str, str, dict[str, bytes]]
) -> None:
    a, a_key, _, files = source_a
    _, handoff = _handoff(a, a_key, tmp_path)
    b, b_key = _slow_b(tmp_path)
    serving = b.serve()
    try:
        request_id = _import(b, handoff)
        deadline = time.monotonic() + 60
        while not _big_parts_stored(b, request_id):
            assert time.monotonic() < deadline, b.log()
            time.sleep(0.05)
        serving.kill()  # SIGKILL: B's worker leaves its leases and its open upload behind
        serving.wait()
        killed_at = datetime.now(UTC).replace(tzinfo=None)
        stored = _big_parts_stored(b, request_id)
        part = 16 * MiB  # the engine's default part size
        size = len(files["video/big.bin"])
        assert len(stored) < -(-size // part), "the object was not caught in the middle"
        stored_ranges = {f"bytes={(n - 1) * part}-{min(n * part, size) - 1}" for n in stored}
        b.serve()
        report = _check_import(b, b_key, request_id, files)
        assert report["objects"]["copied"] == len(files)
        time.sleep(1.5)  # A's audit is written in batches
        after = _source_reads(a, killed_at)
        # The parts stored before the kill were not fetched from A again; the rest were.
        assert after and None not in after and not stored_ranges & set(after), (stored, after)
        client = _gateway_client(b, tmp_path)
        for name, body in files.items():
            got = client.get_object(Bucket="inbox", Key=f"from-a/{name}")["Body"].read()
            assert _sha(got) == _sha(body), name

        # A second import of the same hand-off, revoked at A once it is under way. Slower:
        # socket buffers hold megabytes, so A must have more than that still to send.
        b.stop()
        b.serve(env={**b.env, "FERRY_WORKERS_BANDWIDTH_LIMIT": str(MiB)})
        again = _import(b, handoff, "--prefix", "again/")
        _wait_for_bytes(b, b_key, again)
        a.run("creds", "revoke", json.loads(handoff.read_text())["access_key_id"])
        done = b.wait_for_request(b_key, again, ("completed", "failed", "cancelled"))
        error = done["metadata"].get("error") or ""
        assert done["status"] == "failed", done["metadata"]["report"]
        # "the source refused: GET photos/video/big.bin: InvalidAccessKeyId (HTTP 403): The
        # AWS Access Key Id you provided has been revoked. (1 of 14 objects not copied)"
        assert error.startswith("the source refused: ") and "InvalidAccessKeyId" in error, error
        assert "revoked" in error and f"of {len(files)} objects not copied" in error, error
        open_uploads = [p for p in (b.workdir / "storage").glob("*/uploads/*")]
        assert open_uploads == [], open_uploads
    finally:
        b.stop()
