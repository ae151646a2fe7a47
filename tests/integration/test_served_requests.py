"""Exports and transfers through a real `ferry serve`: its embedded worker does the work."""

from __future__ import annotations

import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.servers import S3Server
from tests.support.ferry import Ferry, http, served_demo


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    with served_demo(
        tmp_path_factory.mktemp("served"), database_url, egress_allowed_cidrs="127.0.0.0/8"
    ) as ferry:
        yield ferry


def test_zip_export_is_built_by_the_served_worker(served: Ferry, tmp_path: Path) -> None:
    key = served.demo_key("bob@example.com")
    status, created = http(
        "POST",
        served.api_url + "/api/portability/export",
        body={
            "request_type": "export",
            "format": "archive",
            "archive_format": "zip",
            "include": ["personal", "files"],
        },
        token=key,
    )
    assert status == 202, created
    ready = served.wait_for_request(key, created["id"], ("ready", "failed"))
    assert ready["status"] == "ready", ready["metadata"].get("error")
    target = tmp_path / "export.zip"
    subprocess.run(["curl", "-sf", "-o", str(target), ready["export_url"]], check=True)
    subprocess.run(["unzip", "-tq", str(target)], check=True)
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
    assert any(n.endswith("bagit.txt") for n in names)
    assert sum(1 for n in names if "/docs/" in n or "docs/" in n) > 0


def test_transfer_is_copied_by_the_served_worker(served: Ferry, seaweedfs_b: S3Server) -> None:
    key = served.demo_key("bob@example.com")
    target = seaweedfs_b.new_bucket("from-ferry")
    status, created = http(
        "POST",
        served.api_url + "/api/portability/export",
        body={
            "request_type": "transfer",
            "source": {"bucket": "bob-data", "prefix": "docs/"},
            "destination": {
                "endpoint_url": seaweedfs_b.endpoint_url,
                "bucket": target,
                "prefix": "moved/",
                "access_key_id": seaweedfs_b.access_key_id,
                "secret_access_key": seaweedfs_b.secret_access_key,
            },
        },
        token=key,
    )
    assert status == 202, created
    assert "secret_access_key" not in json.dumps(created)
    done = served.wait_for_request(key, created["id"], ("completed", "failed"))
    assert done["status"] == "completed", done["metadata"].get("error")
    listed = seaweedfs_b.client().list_objects_v2(Bucket=target, Prefix="moved/")
    assert listed["KeyCount"] == done["metadata"]["progress"]["objects_total"] > 0
