"""The local backend's disk fills up during an archive export: a clean failure, no debris.

A served Ferry keeps its local storage on a 40 MiB tmpfs holding 24 MiB of the user's random
(incompressible) objects, so the archive cannot fit beside them. The export must end
`failed` with a reason that says the disk is full (not a trace), its multipart upload must
be aborted (the free space comes back, no part or temporary file is left), the user's
objects must be intact, and the gateway and API must go on serving: a small export works.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.support.ferry import Ferry, http, seed_local_bucket

MiB = 1024 * 1024
EMAIL = "disk-full@example.com"
SIZE = "40m"


@dataclass
class Installation:
    ferry: Ferry
    root: Path
    api_key: str
    files: dict[str, bytes]

    def wait(self, request_id: str, states: tuple[str, ...]) -> dict[str, Any]:
        return self.ferry.wait_for_request(self.api_key, request_id, states, seconds=90)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def _files_under(root: Path) -> set[str]:
    """Stored files: object data, parts, temporary bodies (not the buckets' index files,
    which the exports bucket gets when the export begins)."""
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith("index.sqlite3")
    }


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("mounting a tmpfs needs root (CI runs as root)")
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mountpoint)], check=True
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def installation(database_url: str, tmp_path: Path, small_disk: Path) -> Iterator[Installation]:
    root = small_disk / "storage"
    ferry = Ferry.create(tmp_path / "ferry", database_url, storage_root=str(root))
    files = {f"photos/{i}.raw": os.urandom(8 * MiB) for i in range(3)}

    seed_local_bucket(root, "disk-full", files)
    user = ferry.create_user(EMAIL)
    ferry.run("buckets", "create", "disk-full", "--owner", EMAIL, "--backend-bucket", "disk-full")
    ferry.serve()
    try:
        yield Installation(ferry, root, user["api_key"], files)
    finally:
        ferry.stop()


def test_disk_full_during_an_archive_export_fails_cleanly(installation: Installation) -> None:
    inst = installation
    before_free = free_bytes(inst.root)
    before_files = _files_under(inst.root)
    status, created = http(
        "POST",
        inst.ferry.api_url + "/api/portability/export",
        body={"format": "archive", "archive_format": "tar.gz", "include": ["files"]},
        token=inst.api_key,
    )
    assert status == 202, created
    done = inst.wait(created["id"], ("ready", "failed"))
    assert done["status"] == "failed", "the archive fitted: the disk is too large for the test"
    error = done["metadata"]["error"]
    assert "space" in error.lower(), error
    assert "Traceback" not in error and "\n" not in error

    # The aborted upload and its temporary files are gone; the space is back.
    assert _files_under(inst.root) - before_files == set(), "debris left on the disk"
    assert free_bytes(inst.root) >= before_free - MiB, (before_free, free_bytes(inst.root))

    # The user's objects are intact, read through the gateway, which still serves.
    status, cred = http(
        "POST",
        inst.ferry.api_url + "/api/portability/credentials",
        body={"bucket": "disk-full"},
        token=inst.api_key,
    )
    assert status == 201, cred
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=inst.ferry.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=cred["access_key_id"],
        aws_secret_access_key=cred["secret_access_key"],
        aws_session_token=cred["session_token"],
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    for key, data in inst.files.items():
        body = s3.get_object(Bucket="disk-full", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest(), key

    # And a small export, which fits, is built and downloads.
    status, small = http(
        "POST",
        inst.ferry.api_url + "/api/portability/export",
        body={"format": "json"},
        token=inst.api_key,
    )
    assert status == 202, small
    ready = inst.wait(small["id"], ("ready", "failed"))
    assert ready["status"] == "ready", ready["metadata"].get("error")
    with urllib.request.urlopen(ready["export_url"], timeout=30) as answer:  # noqa: S310
        assert EMAIL.encode() in answer.read()
