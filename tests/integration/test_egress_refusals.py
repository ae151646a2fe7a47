"""SSRF: what a user can make Ferry connect to, tried as an attacker would.

The default policy refuses every internal address at the API, in the dashboard's connection
check and when a worker connects; with loopback allowed (as the other transfer tests do),
answers from the endpoint are still untrusted: capped, never parsed with a DTD, and never
echoed beyond an S3 error code and a short message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portability.dashboard.destination_check import check_destination
from storage.egress import EgressPolicy
from storage.local import LocalStorage
from tests.support.egress import LOOPBACK
from tests.support.ferry import Ferry, http, served_demo
from tests.support.transfer_worker import End, new_transfer, resolver, run_until_final
from transfer import TransferConfig, TransferWorker


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    with served_demo(tmp_path_factory.mktemp("egress"), database_url) as ferry:  # default policy
        yield ferry


@pytest.mark.parametrize(
    ("endpoint_url", "message"),
    [
        ("http://127.0.0.1:5432", "destination address 127.0.0.1 is not allowed"),
        ("http://localhost:6379", "destination address 127.0.0.1 is not allowed"),
        ("http://[::1]:9000", "destination address ::1 is not allowed"),
        ("http://[::ffff:127.0.0.1]:9000", "destination address ::ffff:7f00:1 is not allowed"),
        ("http://169.254.169.254/latest", "destination address 169.254.169.254 is not allowed"),
        ("http://10.1.2.3:9000", "destination address 10.1.2.3 is not allowed"),
        ("http://100.64.0.1", "destination address 100.64.0.1 is not allowed"),
        ("http://2130706433:9000", "destination address 127.0.0.1 is not allowed"),
        ("http://user:pass@127.0.0.1:9000", "must not carry a user name or password"),
    ],
)
def test_the_api_refuses_internal_destinations(
    served: Ferry, endpoint_url: str, message: str
) -> None:
    status, answer = http(
        "POST",
        served.api_url + "/api/portability/export",
        token=served.demo_key("alice@example.com"),
        body={
            "request_type": "transfer",
            "destination": {
                "endpoint_url": endpoint_url,
                "bucket": "loot",
                "access_key_id": "AKID",
                "secret_access_key": "secret",
            },
            "source": {"bucket": "alice-data", "prefix": ""},
        },
    )
    assert status in (400, 422), answer
    assert message in answer["error"]["message"]


class _Endpoint:
    """A loopback HTTP service: HEAD finds the bucket, anything else gets one canned answer."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/xml") -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            writer.close()
            return
        self.requests += 1
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        if length:
            await reader.readexactly(length)
        if head.startswith(b"HEAD "):  # HeadBucket: the bucket is there; the listing answers
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + self.body
        )
        await writer.drain()
        writer.close()


@asynccontextmanager
async def _listening(endpoint: _Endpoint) -> AsyncIterator[str]:
    server = await asyncio.start_server(endpoint.handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def _destination(url: str) -> dict[str, Any]:
    return {
        "endpoint_url": url,
        "region": "us-east-1",
        "bucket": "target",
        "prefix": "",
        "access_key_id": "AKID",
        "secret_access_key": "secret",
        "session_token": None,
        "addressing_style": "path",
    }


INTERNAL = (
    b"<?xml version='1.0'?><Error><Code>AccessDenied</Code><Message>internal admin panel: "
    + b"db password hunter2 " * 50
    + "\u202e\nspoofed line</Message></Error>".encode()
)
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b"<ListBucketResult><Name>&lol3;</Name></ListBucketResult>"
)


async def test_the_connection_check_refuses_by_default_without_connecting() -> None:
    endpoint = _Endpoint(200, b"")
    async with _listening(endpoint) as url:
        result = await check_destination(_destination(url), EgressPolicy())
    assert not result.ok
    assert result.message == "destination address 127.0.0.1 is not allowed."
    assert endpoint.requests == 0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, INTERNAL, "The endpoint refused: AccessDenied (HTTP 403)."),
        (200, b"<html>SSH-2.0-OpenSSH_9.2 hello</html>", "did not answer as an S3 service"),
        (200, BOMB, "did not answer as an S3 service"),
        (502, b"Bad gateway: upstream 10.0.0.7:8080 refused", "did not answer as an S3"),
    ],
)
async def test_what_an_endpoint_says_is_not_echoed(status: int, body: bytes, expected: str) -> None:
    endpoint = _Endpoint(status, body)
    async with _listening(endpoint) as url:
        result = await check_destination(_destination(url), LOOPBACK)
    assert not result.ok
    assert expected in result.message
    for secret in ("hunter2", "OpenSSH", "10.0.0.7", "lol"):
        assert secret not in result.message


async def test_a_worker_refuses_at_connection_time(
    db_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    """A destination accepted earlier (or rebound since) fails its items, never connecting."""
    root = tmp_path / "source"
    source = LocalStorage(root)
    await source.create_bucket("src")
    for i in range(3):
        await source.put("src", f"f{i}", _one(b"payload"), size=7)
    endpoint = _Endpoint(200, b"")
    async with _listening(endpoint) as url:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(End("src", local_root=str(root)), End("target", endpoint_url=url)),
            worker_id="egress",
            config=TransferConfig(request_attempts=1, item_attempts=1),
        )
        request_id = await new_transfer(db_sessions)
        done = await run_until_final(worker, db_sessions, request_id, timeout=60)
    assert endpoint.requests == 0
    report = (done.meta or {})["report"]
    assert report["objects"]["failed"] == 3, report
    reasons = json.dumps(report)
    assert "address-refused" in reasons and "127.0.0.1 is not allowed" in reasons


async def test_a_target_answer_is_capped_in_the_report(
    db_sessions: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    root = tmp_path / "source"
    source = LocalStorage(root)
    await source.create_bucket("src")
    await source.put("src", "f", _one(b"payload"), size=7)
    endpoint = _Endpoint(403, INTERNAL)
    async with _listening(endpoint) as url:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(End("src", local_root=str(root)), End("target", endpoint_url=url)),
            worker_id="capped",
            config=TransferConfig(request_attempts=1, item_attempts=1),
            egress=LOOPBACK,
        )
        request_id = await new_transfer(db_sessions)
        done = await run_until_final(worker, db_sessions, request_id, timeout=60)
    assert endpoint.requests >= 1
    (item,) = (done.meta or {})["report"]["items"]
    assert "AccessDenied" in item["error"]
    assert len(item["error"]) < 300  # the code and 200 characters of the message at most
    assert "\u202e" not in item["error"] and "\n" not in item["error"]


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
