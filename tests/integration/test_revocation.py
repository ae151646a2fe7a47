"""Revocation reaches every gateway within a second; a dump of the database holds no secret.

Two `ferry serve` processes share one database (PostgreSQL under CI), as two gateway
instances behind a load balancer would.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, IncompleteReadError
from urllib3.exceptions import ProtocolError

from db.urls import is_sqlite, sqlite_path, sync_url
from storage.local import LocalStorage
from tests.support.ferry import Ferry, free_port, http

MiB = 1024 * 1024


def libpq_url(url: str) -> str:
    return sync_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class Cluster:
    ferry: Ferry
    gateways: list[str]
    alice: dict[str, str]
    admin: dict[str, str]

    def issue(self, **body: Any) -> dict[str, Any]:
        status, answer = http(
            "POST",
            self.ferry.api_url + "/api/portability/credentials",
            body={"bucket": "alice-data", **body},
            token=self.alice["api_key"],
        )
        assert status == 201, answer
        return answer


@pytest.fixture(scope="module")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ferry = Ferry.create(tmp_path_factory.mktemp("revocation"), database_url)
    admin = ferry.create_user("root@example.com", admin=True)
    alice = ferry.create_user("alice@example.com")
    ferry.run("buckets", "create", "alice-data", "--owner", "alice@example.com")
    ferry.serve()
    second = dict(ferry.env)
    port = free_port()
    second.update(
        FERRY_GATEWAY_LISTEN=f"127.0.0.1:{port}", FERRY_API_LISTEN=f"127.0.0.1:{free_port()}"
    )
    ferry.serve(env=second)
    try:
        yield Cluster(ferry, [ferry.gateway_url, f"http://127.0.0.1:{port}"], alice, admin)
    finally:
        ferry.stop()


def client(url: str, cred: dict[str, Any]) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=cred["access_key_id"],
        aws_secret_access_key=cred["secret_access_key"],
        aws_session_token=cred["session_token"],
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def works(s3: Any) -> bool:
    try:
        s3.list_objects_v2(Bucket="alice-data")
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "InvalidAccessKeyId", exc.response
        return False


def seconds_until_refused(clients: list[Any], since: float, limit: float = 5.0) -> list[float]:
    refused: list[float | None] = [None] * len(clients)
    while None in refused and time.monotonic() - since < limit:
        for i, s3 in enumerate(clients):
            if refused[i] is None and not works(s3):
                refused[i] = time.monotonic() - since
        time.sleep(0.02)
    return [r if r is not None else float("inf") for r in refused]


def test_revoke_reaches_both_gateways_within_a_second(cluster: Cluster) -> None:
    cred = cluster.issue(prefixes=[""])
    clients = [client(url, cred) for url in cluster.gateways]
    assert all(works(s3) for s3 in clients)  # both have it cached now
    status, _ = http(
        "DELETE",
        f"{cluster.ferry.api_url}/api/portability/credentials/{cred['access_key_id']}",
        token=cluster.alice["api_key"],
    )
    assert status == 204
    delays = seconds_until_refused(clients, time.monotonic())
    print(f"refused after {delays} s")
    assert max(delays) < 1.0, delays


def test_admin_revoke_all_of_a_user(cluster: Cluster) -> None:
    creds = [cluster.issue(), cluster.issue(session_token=False)]
    clients = [client(url, c) for url in cluster.gateways for c in creds]
    assert all(works(s3) for s3 in clients)
    status, answer = http(
        "POST",
        f"{cluster.ferry.api_url}/api/admin/users/{cluster.alice['id']}/revoke-credentials",
        token=cluster.admin["api_key"],
    )
    assert status == 200 and answer["revoked"] >= 2, answer
    delays = seconds_until_refused(clients, time.monotonic())
    assert max(delays) < 1.0, delays


def test_only_admins_revoke_for_others(cluster: Cluster) -> None:
    cred = cluster.issue()
    status, answer = http(
        "POST",
        f"{cluster.ferry.api_url}/api/admin/credentials/{cred['access_key_id']}/revoke",
        token=cluster.alice["api_key"],
    )
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = http(
        "POST",
        f"{cluster.ferry.api_url}/api/admin/credentials/{cred['access_key_id']}/revoke",
        token=cluster.admin["api_key"],
    )
    assert status == 200 and answer["status"] == "revoked"


def test_database_dump_holds_no_secret(cluster: Cluster) -> None:
    cred = cluster.issue()
    tokenless = cluster.issue(session_token=False)
    url = cluster.ferry.env["FERRY_DATABASE_URL"]
    if is_sqlite(url):
        with sqlite3.connect(sqlite_path(url)) as conn:
            dump = "\n".join(conn.iterdump())
    else:
        pg_dump = shutil.which("pg_dump")
        if pg_dump is None:
            pytest.fail("pg_dump is not installed")
        dump = subprocess.run(
            [pg_dump, libpq_url(url)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    assert "alice@example.com" in dump  # the dump is real and complete
    assert cred["access_key_id"] in dump
    secrets_ = [
        cred["secret_access_key"],
        cred["session_token"],
        tokenless["secret_access_key"],
        cluster.alice["api_key"],
        cluster.admin["api_key"],
    ]
    for secret in secrets_:
        assert secret not in dump


def test_a_revoke_cuts_a_download_under_way(cluster: Cluster) -> None:
    size = 4 * MiB

    async def seed() -> None:
        storage = LocalStorage(Path(cluster.ferry.env["FERRY_STORAGE_ROOT"]))
        await storage.create_bucket("alice-data")

        async def body() -> AsyncIterator[bytes]:
            yield os.urandom(size)

        await storage.put("alice-data", "slow.bin", body(), size=size)
        await storage.close()

    asyncio.run(seed())
    # 256 KiB/s: the whole object would take 16 s, so the revoke lands mid-download.
    cred = cluster.issue(prefixes=[""], max_bytes_per_second=256 * 1024)
    body = client(cluster.gateways[1], cred).get_object(Bucket="alice-data", Key="slow.bin")["Body"]
    received = len(body.read(64 * 1024))
    status, _ = http(
        "DELETE",
        f"{cluster.ferry.api_url}/api/portability/credentials/{cred['access_key_id']}",
        token=cluster.alice["api_key"],
    )
    assert status == 204
    revoked = time.monotonic()
    with pytest.raises((IncompleteReadError, ProtocolError)):
        while chunk := body.read(64 * 1024):
            received += len(chunk)
    cut_after = time.monotonic() - revoked
    print(f"cut {cut_after:.2f} s after the revoke, {received} of {size} bytes")
    assert cut_after < 1.0
    assert received < size // 2
