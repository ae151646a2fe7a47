"""Exports end to end: the REST API, the worker, the gateway and real download tools.

One in-process installation per module (tests/support/export_stack.py; until `ferry serve`
mounts the export routes and worker): the API app with the request routes, the S3 gateway,
both served by uvicorn on loopback ports in a background event loop, the local storage
backend, and the database of `database_url` (PostgreSQL when FERRY_TEST_DATABASE_URL is
set). `ferry demo` data fills it: tricky keys, a 50 MiB object, a year of usage, billing and
audit rows, three API keys. The worker is driven pass by pass (`run_once`), so each test sees
exactly what it caused. Downloads go through curl, extraction through the system's tar and
unzip and Python's tarfile and zipfile, verification through the bagit package and the
shipped JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import bagit
import jsonschema
import pytest
from sqlalchemy import select

from db.models import Bucket, PortabilityRequest, User
from portability.exports.links import LinkSigner, issue_link_credential
from portability.exports.personal import schema
from tests.support.export_stack import Stack, fetch, open_stack, run_curl
from tests.support.ferry import http
from tests.support.tricky_keys import TRICKY_KEYS


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with open_stack(database_url, tmp_path_factory.mktemp("export")) as stack:
        yield stack


# source data as the tests see it


async def _objects(stack: Stack, bucket_name: str) -> dict[str, bytes]:
    async with stack.sessions() as session:
        bucket = await session.scalar(select(Bucket).where(Bucket.name == bucket_name))
    assert bucket is not None
    found: dict[str, bytes] = {}
    start = ""
    while True:
        page = await stack.storage.list(
            bucket.backend_bucket, prefix=bucket.backend_prefix, start_after=start
        )
        for info in page.objects:
            stream = await stack.storage.get(bucket.backend_bucket, info.key)
            found[info.key[len(bucket.backend_prefix) :]] = b"".join([c async for c in stream.body])
        if not page.is_truncated:
            return found
        start = page.next_start_after or ""


@pytest.fixture(scope="module")
def alice_files(stack: Stack) -> dict[str, bytes]:
    return stack.loop.call(_objects(stack, "alice-data"))


# validation


def test_requests_need_a_valid_api_key(stack: Stack) -> None:
    for token in (None, "fk_not-a-key", "Basic abc"):
        status, body = http("GET", stack.api_url + "/api/portability/requests", token=token)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"
    status, _ = http(
        "POST", stack.api_url + "/api/portability/export", body={"format": "json"}, token=None
    )
    assert status == 401


@pytest.mark.parametrize(
    "body",
    [
        {"format": "pdf"},
        {"format": "archive", "archive_format": "rar"},
        {"format": "archive", "include": ["photos"]},
        {"format": "json", "archive_format": "zip"},
        {"request_type": "delete", "format": "json"},
        {"format": "json", "surprise": 1},
    ],
)
def test_bad_export_requests_are_refused(stack: Stack, body: dict[str, Any]) -> None:
    status, answer = stack.api("POST", "/api/portability/export", body=body)
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid"
    assert answer["error"]["message"]


def test_another_users_request_is_not_found(stack: Stack) -> None:
    status, created = stack.api(
        "POST", "/api/portability/export", body={"format": "json"}, user="bob"
    )
    assert status == 202
    for path in (f"/api/portability/requests/{created['id']}", "/api/portability/requests/nope"):
        status, answer = stack.api("GET", path)
        assert status == 404
        assert answer["error"]["code"] == "not_found"
    status, _ = stack.api("POST", f"/api/portability/requests/{created['id']}/cancel")
    assert status == 404
    status, listed = stack.api("GET", "/api/portability/requests")
    assert created["id"] not in [r["id"] for r in listed["requests"]]
    # One running export per user: bob's second one waits its turn.
    status, answer = stack.api(
        "POST", "/api/portability/export", body={"format": "json"}, user="bob"
    )
    assert status == 409
    assert answer["error"]["code"] == "conflict"
    status, cancelled = stack.api(
        "POST", f"/api/portability/requests/{created['id']}/cancel", user="bob"
    )
    assert status == 202
    assert cancelled["status"] == "cancelled"
    stack.work()  # the worker leaves a cancelled request alone
    status, again = stack.api("GET", f"/api/portability/requests/{created['id']}", user="bob")
    assert again["status"] == "cancelled"


# personal data


def _assert_no_api_key(stack: Stack, blob: bytes, where: str) -> None:
    for email, key in stack.keys.items():
        assert key.encode() not in blob, f"{email}'s API key found in {where}"


def test_json_export_validates_and_masks_keys(stack: Stack) -> None:
    done = stack.export({"format": "json"})
    assert done["metadata"]["due_at"]
    [part] = done["metadata"]["parts"]
    assert done["export_url"] == part["url"]
    out = stack.workdir / "personal.json"
    assert fetch(part["url"], out) == 200
    raw = out.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == part["sha256"]
    assert len(raw) == part["size"]
    document = json.loads(raw)
    jsonschema.validate(document, schema())
    for section in ("subject", "api_keys", "usage", "billing", "audit_logs"):
        assert document[section], section
    assert document["subject"]["email"] == "alice@example.com"
    assert len(document["usage"]) == 12 and len(document["billing"]) == 12
    assert len(document["audit_logs"]) >= 40
    key = stack.keys["alice@example.com"]
    assert document["api_keys"][0]["key"] == f"{key[:12]}…{key[-4:]}"
    _assert_no_api_key(stack, raw, "personal-data.json")


# archives


def _extract(kind: str, archive: Path, into: Path) -> None:
    into.mkdir()
    if kind == "system-tar":
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(into)], check=True)
    elif kind == "system-unzip":
        if shutil.which("unzip") is None:
            pytest.skip("unzip is not installed")
        subprocess.run(["unzip", "-q", str(archive), "-d", str(into)], check=True)
    elif kind == "tarfile":
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)  # noqa: S202 - the point: hostile names must stay inside


def _tree(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("archive_format", ["tar.gz", "zip"])
def test_archive_is_identical_bagged_and_safe(
    stack: Stack, alice_files: dict[str, bytes], archive_format: str
) -> None:
    done = stack.export({"format": "archive", "archive_format": archive_format})
    meta = done["metadata"]
    assert meta["report"]["objects"] == len(alice_files)
    assert meta["progress"]["objects_done"] == len(alice_files)
    parts = meta["parts"]
    assert len(parts) >= 2  # 40 MiB parts, a 50 MiB object and ~5 MiB of others
    manifest_file = stack.workdir / f"manifest-{archive_format}.json"
    assert fetch(meta["manifest_url"], manifest_file) == 200
    manifest = json.loads(manifest_file.read_bytes())
    assert manifest["totals"]["objects"] == len(alice_files)
    assert manifest["totals"]["parts"] == len(parts)
    entries = {e["key"]: e for e in manifest["objects"]}
    assert set(entries) == set(alice_files)
    tools = ["system-tar", "tarfile"] if archive_format == "tar.gz" else ["system-unzip", "zipfile"]
    for tool in tools:
        base = stack.workdir / f"x-{archive_format}-{tool}"
        base.mkdir()
        extracted: dict[str, Path] = {}
        for part in parts:
            archive = stack.workdir / f"{tool}-{part['name']}"
            assert fetch(part["url"], archive) == 200
            assert hashlib.sha256(archive.read_bytes()).hexdigest() == part["sha256"]
            into = base / part["name"]
            _extract(tool, archive, into)
            [bag_dir] = list(into.iterdir())
            bagit.Bag(str(bag_dir)).validate()  # checksums, completeness, Payload-Oxum
            for rel, path in _tree(into).items():
                extracted[f"{part['name']}/{rel}"] = path
            for path in into.rglob("*"):  # nothing outside the folder, no links
                assert not path.is_symlink()
                assert path.resolve().is_relative_to(into.resolve())
        # every object, byte for byte, where the manifest says, with the manifest's sha256
        for key, data in alice_files.items():
            entry = entries[key]
            path = extracted[f"{parts[entry['part'] - 1]['name']}/{entry['path']}"]
            body = path.read_bytes()
            assert body == data, key
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], key
        for key in TRICKY_KEYS:
            path = entries[key]["path"]
            assert ".." not in path.split("/") and "//" not in path and not path.endswith("/")
        # the personal data is there, valid, and no full API key is anywhere in the archive
        personal = [p for rel, p in extracted.items() if rel.endswith("data/personal-data.json")]
        jsonschema.validate(json.loads(personal[0].read_bytes()), schema())
        for rel, path in extracted.items():
            _assert_no_api_key(stack, path.read_bytes(), rel)
    # nothing was written outside the extraction folders by the hostile names
    assert not (stack.workdir / "etc").exists() and not Path("/abs/path").exists()
    jpegs = [e for e in entries.values() if e["key"].endswith(".jpg")]
    assert jpegs and not any(e["compressed"] for e in jpegs)  # stored, not recompressed
    assert any(e["compressed"] for e in entries.values() if e["key"].endswith(".txt"))


def test_download_resumes_with_range_and_dies_on_cancel(stack: Stack) -> None:
    done = stack.export({"format": "archive", "archive_format": "tar.gz", "include": ["files"]})
    part = done["metadata"]["parts"][0]
    out = stack.workdir / "resumed.tar.gz"
    # First attempt stops after 1 MiB (as a dropped connection would), then curl resumes.
    first = run_curl("-r", "0-1048575", "-o", str(out), "-w", "%{http_code}", part["url"])
    assert first.stdout == b"206"
    assert out.stat().st_size == 1024 * 1024
    second = run_curl("-C", "-", "-o", str(out), "-w", "%{http_code}", part["url"])
    assert second.stdout == b"206", second.stderr
    assert out.stat().st_size == part["size"]
    assert hashlib.sha256(out.read_bytes()).hexdigest() == part["sha256"]
    # each download is audited by the gateway
    stack.flush_audit()
    receipt = stack.loop.call(stack.worker.refresh_receipt(uuid.UUID(done["id"])))
    assert receipt is not None and receipt["objects_fetched"] >= 1
    status, cancelled = stack.api("POST", f"/api/portability/requests/{done['id']}/cancel")
    assert status == 202 and cancelled["status"] == "cancelled"
    time.sleep(0.6)  # gateways cache a credential for at most half a second
    dead = run_curl("-o", "-", "-w", "\n%{http_code}", part["url"])
    assert dead.stdout.endswith(b"403")
    assert b"InvalidAccessKeyId" in dead.stdout
    stack.work()  # the sweeper deletes what the cancelled export stored
    dead_again = run_curl("-o", "/dev/null", "-w", "%{http_code}", part["url"])
    assert dead_again.stdout == b"403"


def test_expired_link_is_refused(stack: Stack) -> None:
    done = stack.export({"format": "json"})
    part = done["metadata"]["parts"][0]

    async def short_link() -> str:
        async with stack.sessions.begin() as session:
            request = await session.get(PortabilityRequest, uuid.UUID(done["id"]))
            assert request is not None
            user = await session.get(User, request.user_id)
            assert user is not None
            bucket = await session.scalar(
                select(Bucket).where(Bucket.name == f"ferry-export-{user.id.hex}")
            )
            assert bucket is not None
            credential, secret = await issue_link_credential(
                session,
                stack.master_key,
                user,
                bucket,
                request.id,
                ttl_seconds=900,
                now=request.created_at,
            )
            signer = LinkSigner(
                stack.gateway_url, "us-east-1", bucket.name, credential.access_key_id, secret
            )
            return signer.url(part["key"], expires_in=1)

    url = stack.loop.call(short_link())
    time.sleep(2.0)
    answer = run_curl("-o", "-", "-w", "\n%{http_code}", url)
    assert answer.stdout.endswith(b"403")
    assert b"<Code>AccessDenied</Code>" in answer.stdout


def test_sweeper_expires_old_exports(stack: Stack) -> None:
    done = stack.export({"format": "json"}, user="bob")
    part = done["metadata"]["parts"][0]
    assert fetch(part["url"], stack.workdir / "bob.json") == 200

    async def age() -> None:
        async with stack.sessions.begin() as session:
            request = await session.get(PortabilityRequest, uuid.UUID(done["id"]))
            assert request is not None and request.expires_at is not None
            request.expires_at = request.expires_at - timedelta(days=8)

    stack.loop.call(age())
    stack.work()
    _, expired = stack.api("GET", f"/api/portability/requests/{done['id']}", user="bob")
    assert expired["status"] == "expired"
    time.sleep(0.6)
    assert fetch(part["url"], stack.workdir / "bob-again.json") == 403


def test_pull_export_credentials_manifest_and_receipt(stack: Stack) -> None:
    status, created = stack.api(
        "POST", "/api/portability/export", body={"format": "s3"}, user="bob"
    )
    assert status == 202
    [cred] = created["credentials"]  # bob has one bucket: one credential per bucket
    assert cred["bucket"] == "bob-data" and cred["secret_access_key"]
    assert "aws_cli" in cred["snippets"]
    stack.work()
    status, done = stack.api("GET", f"/api/portability/requests/{created['id']}", user="bob")
    assert done["status"] == "ready"
    assert "secret_access_key" not in json.dumps(done)
    manifest_file = stack.workdir / "pull-manifest.json"
    assert fetch(done["metadata"]["manifest_url"], manifest_file) == 200
    manifest = json.loads(manifest_file.read_bytes())
    entries = manifest["objects"]
    assert len(entries) == 80 and all(e["sha256"] for e in entries)

    import boto3
    from botocore.config import Config as BotoConfig

    s3 = boto3.client(
        "s3",
        endpoint_url=stack.gateway_url,
        aws_access_key_id=cred["access_key_id"],
        aws_secret_access_key=cred["secret_access_key"],
        aws_session_token=cred["session_token"],
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": "path"}),
    )
    half = entries[:40]
    for entry in half:
        body = s3.get_object(Bucket="bob-data", Key=entry["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
    stack.flush_audit()
    receipt = stack.loop.call(stack.worker.refresh_receipt(uuid.UUID(created["id"])))
    assert receipt is not None
    assert receipt["objects_fetched"] == 40 and receipt["missing_count"] == 40
    assert receipt["missing"][0]["key"] == entries[40]["key"]
    # the rest, one of them in two ranges
    for entry in entries[40:]:
        if entry["size"] > 10:
            cut = entry["size"] // 2
            for span in (f"bytes=0-{cut - 1}", f"bytes={cut}-"):
                s3.get_object(Bucket="bob-data", Key=entry["key"], Range=span)["Body"].read()
        else:
            s3.get_object(Bucket="bob-data", Key=entry["key"])["Body"].read()
    stack.flush_audit()
    receipt = stack.loop.call(stack.worker.refresh_receipt(uuid.UUID(created["id"])))
    assert receipt is not None and receipt["complete"], receipt["missing"]
    status, finished = stack.api("GET", f"/api/portability/requests/{created['id']}", user="bob")
    assert finished["status"] == "completed"
    assert finished["metadata"]["receipt"]["bytes_fetched"] == manifest["totals"]["bytes"]


def test_admin_sees_overdue_requests(stack: Stack) -> None:
    status, created = stack.api(
        "POST", "/api/portability/export", body={"format": "json"}, user="bob"
    )
    assert status == 202

    async def backdate() -> None:
        async with stack.sessions.begin() as session:
            request = await session.get(PortabilityRequest, uuid.UUID(created["id"]))
            assert request is not None
            request.meta = {**(request.meta or {}), "due_at": "2020-01-01T00:00:00Z"}

    stack.loop.call(backdate())
    status, answer = stack.api("GET", "/api/admin/requests/overdue", user="bob")
    assert status == 403
    status, answer = stack.api("GET", "/api/admin/requests/overdue", user="admin")
    assert status == 200
    late = {r["id"]: r for r in answer["requests"]}
    assert created["id"] in late and late[created["id"]]["overdue_days"] > 300
    stack.api("POST", f"/api/portability/requests/{created['id']}/cancel", user="bob")


def test_transfer_requests_go_through_the_same_routes(stack: Stack) -> None:
    destination = {
        "endpoint_url": "https://s3.example.net",
        "region": "eu-west-1",
        "bucket": "alice-elsewhere",
        "prefix": "from-ferry/",
        "access_key_id": "AKIDEXAMPLE",
        "secret_access_key": "very-secret-destination-key",
        "session_token": None,
    }
    body = {
        "request_type": "transfer",
        "destination": destination,
        "source": {"bucket": "alice-data", "prefix": ""},
    }
    status, created = stack.api("POST", "/api/portability/export", body=body)
    assert status == 202, created
    assert created["request_type"] == "transfer" and created["status"] == "pending"
    assert created["transfer_destination"]["bucket"] == "alice-elsewhere"
    assert "very-secret-destination-key" not in json.dumps(created)
    status, shown = stack.api("GET", f"/api/portability/requests/{created['id']}")
    assert "very-secret-destination-key" not in json.dumps(shown)
    status, cancelled = stack.api("POST", f"/api/portability/requests/{created['id']}/cancel")
    assert status == 202 and cancelled["status"] == "cancelled"
    bad = {**body, "destination": {**destination, "endpoint_url": "ftp://x"}}
    status, answer = stack.api("POST", "/api/portability/export", body=bad)
    assert status == 422 and answer["error"]["code"] == "invalid"
