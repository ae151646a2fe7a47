"""The gateway in-process: botocore-signed requests, a real database, the local backend.

Scope, denial and error semantics are checked here request by request; real clients pulling
through a real `ferry serve` are in tests/integration/test_pull_clients.py.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from db.models import Credential
from tests.support.gateway_world import BASE, FILES, NS, Key, World, error_code, open_world
from tests.support.signing import sign


def listing(response: Any) -> tuple[list[str], list[str]]:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    keys = [e.text or "" for e in root.iter(f"{NS}Key")]
    prefixes = [e.text or "" for e in root.iter(f"{NS}Prefix") if e is not root.find(f"{NS}Prefix")]
    return keys, prefixes


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(database_url, tmp_path_factory.mktemp("gateway-storage")) as opened:
        yield opened


def test_anonymous_is_access_denied(world: World) -> None:
    response = world.client.get("/alice-data/share/photos/p1.jpg")
    assert response.status_code == 403
    assert error_code(response) == "AccessDenied"
    assert response.headers["content-type"].startswith("application/xml")


def test_unknown_key_id(world: World) -> None:
    world.keys["bogus"] = Key("FRY" + "Z" * 17, "x" * 40, None)
    response = world.request("/alice-data/share/photos/p1.jpg", "bogus")
    assert (response.status_code, error_code(response)) == (403, "InvalidAccessKeyId")


def test_listing_of_ancestors_shows_only_the_way_in(world: World) -> None:
    keys, prefixes = listing(world.request("/alice-data?list-type=2&delimiter=%2F"))
    assert (keys, prefixes) == ([], ["share/"])
    keys, prefixes = listing(world.request("/alice-data?list-type=2&delimiter=%2F&prefix=share%2F"))
    assert (keys, prefixes) == ([], ["share/photos/"])
    keys, prefixes = listing(
        world.request("/alice-data?list-type=2&delimiter=%2F&prefix=share%2Fphotos%2F")
    )
    assert keys == ["share/photos/p1.jpg", "share/photos/p2.jpg"]
    assert prefixes == ["share/photos/2024/"]
    keys, _ = listing(world.request("/alice-data?list-type=2"))
    assert keys == ["share/photos/2024/p3.jpg", "share/photos/p1.jpg", "share/photos/p2.jpg"]
    # V1 (rclone's default for other providers) is filtered the same way.
    keys, prefixes = listing(world.request("/alice-data?prefix=share%2F&delimiter=%2F"))
    assert (keys, prefixes) == ([], ["share/photos/"])
    # A prefix that only shares characters with the scope shows nothing of the sibling.
    keys, _ = listing(world.request("/alice-data?list-type=2&prefix=share%2Fphoto"))
    assert all(k.startswith("share/photos/") for k in keys) and keys


def test_listing_outside_the_scope_is_denied(world: World) -> None:
    for query in ["prefix=secret%2F", "prefix=share%2Fa", "prefix=share%2Fphotosx%2F"]:
        response = world.request(f"/alice-data?list-type=2&{query}")
        assert (response.status_code, error_code(response)) == (403, "AccessDenied"), query


def test_pagination_walks_every_key_once(world: World) -> None:
    seen: list[str] = []
    token = None
    for _ in range(10):
        query = "list-type=2&max-keys=1" + (f"&continuation-token={token}" if token else "")
        root = ET.fromstring(world.request(f"/alice-data?{query}").content)
        seen += [e.text or "" for e in root.iter(f"{NS}Key")]
        token = root.findtext(f"{NS}NextContinuationToken")
        if root.findtext(f"{NS}IsTruncated") == "false":
            break
    assert seen == ["share/photos/2024/p3.jpg", "share/photos/p1.jpg", "share/photos/p2.jpg"]
    marker, seen = "", []
    for _ in range(10):
        root = ET.fromstring(
            world.request(
                f"/alice-data?max-keys=1&delimiter=%2F&prefix=share%2Fphotos%2F"
                f"&marker={quote(marker, safe='')}"
            ).content
        )
        seen += [e.text or "" for e in root.iter(f"{NS}Key")]
        seen += [p.text or "" for c in root.iter(f"{NS}CommonPrefixes") for p in c]
        if root.findtext(f"{NS}IsTruncated") == "false":
            break
        marker = root.findtext(f"{NS}NextMarker") or ""
    assert seen == ["share/photos/2024/", "share/photos/p1.jpg", "share/photos/p2.jpg"]


def test_get_range_and_conditionals(world: World) -> None:
    path = "/alice-data/share/photos/p1.jpg"
    whole = world.request(path)
    assert whole.status_code == 200
    assert whole.content == FILES["share/photos/p1.jpg"]
    etag = whole.headers["etag"]
    part = world.request(path, headers={"Range": "bytes=10-19"})
    assert (part.status_code, part.content) == (206, b"0123456789")
    assert part.headers["content-range"] == "bytes 10-19/1000"
    suffix = world.request(path, headers={"Range": "bytes=-5"})
    assert (suffix.status_code, suffix.content) == (206, b"56789")
    beyond = world.request(path, headers={"Range": "bytes=5000-"})
    assert (beyond.status_code, error_code(beyond)) == (416, "InvalidRange")
    assert world.request(path, headers={"If-None-Match": etag}).status_code == 304
    failed = world.request(path, headers={"If-Match": '"nope"'})
    assert (failed.status_code, error_code(failed)) == (412, "PreconditionFailed")
    head = world.request(path, method="HEAD")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "1000", b"")


def test_reads_outside_the_scope(world: World) -> None:
    for path in [
        "/alice-data/share/a.txt",
        "/alice-data/secret/s.txt",
        "/alice-data/top.txt",
        "/alice-data/share/photosx/sibling.jpg",
        "/other-bucket/share/photos/p1.jpg",
    ]:
        response = world.request(path)
        assert (response.status_code, error_code(response)) == (403, "AccessDenied"), path
    # Folder names above the scope are "no such key": rclone probes them before listing.
    for path in ["/alice-data/share", "/alice-data/share/", "/alice-data/share/photos"]:
        assert world.request(path, method="HEAD").status_code == 404, path


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("PUT", "/alice-data/share/photos/new.jpg", {}),
        ("DELETE", "/alice-data/share/photos/p1.jpg", {}),
        ("POST", "/alice-data/share/photos/big.bin?uploads", {}),
        (
            "PUT",
            "/alice-data/share/photos/c.jpg",
            {"x-amz-copy-source": "alice-data/share/photos/p1.jpg"},
        ),
        ("PUT", "/alice-data/share/photos/p1.jpg?acl", {}),
        ("GET", "/alice-data/share/photos/p1.jpg?acl", {}),
        ("PUT", "/alice-data", {}),
        ("DELETE", "/alice-data", {}),
        ("POST", "/alice-data?delete", {}),
    ],
)
def test_every_write_is_denied(
    world: World, method: str, path: str, headers: dict[str, str]
) -> None:
    response = world.request(path, method=method, headers=headers)
    assert (response.status_code, error_code(response)) == (403, "AccessDenied")


def test_tampering_after_signing(world: World) -> None:
    key = world.keys["photos"]
    signed = sign(
        BASE + "/alice-data/share/photos/p1.jpg",
        access_key_id=key.access_key_id,
        secret=key.secret,
        token=key.token,
        when=world.clock[0],
        headers={"Range": "bytes=0-1"},
    )
    headers = dict(signed.headers.items())
    for url, extra in [
        (BASE + "/alice-data/share/photos/p2.jpg", {}),
        (signed.url + "?x-id=GetObject", {}),
        (signed.url, {"Range": "bytes=0-999"}),
    ]:
        response = world.client.get(url, headers={**headers, **extra})
        assert (response.status_code, error_code(response)) == (403, "SignatureDoesNotMatch")


def test_tokens(world: World) -> None:
    path = "/alice-data/share/photos/p1.jpg"
    missing = world.request(path, token=False)
    assert (missing.status_code, error_code(missing)) == (400, "InvalidToken")
    wrong = world.request(path, token="FRYTnot-the-token")
    assert (wrong.status_code, error_code(wrong)) == (400, "InvalidToken")
    assert world.request("/alice-data/share/a.txt", "tokenless").status_code == 200
    extra = world.request("/alice-data/share/a.txt", "tokenless", token="FRYTsomething")
    assert (extra.status_code, error_code(extra)) == (400, "InvalidToken")


def test_revoked_expired_skewed_presigned(world: World) -> None:
    path = "/alice-data/share/photos/p1.jpg"
    revoked = world.request(path, "revoked")
    assert (revoked.status_code, error_code(revoked)) == (403, "InvalidAccessKeyId")
    cidr = world.request(path, "cidr")
    assert (cidr.status_code, error_code(cidr)) == (403, "AccessDenied")
    skewed = world.request(path, when=world.clock[0] - timedelta(minutes=16))
    assert (skewed.status_code, error_code(skewed)) == (403, "RequestTimeTooSkewed")

    url = world.request(path, presign=60)
    assert url.status_code == 200
    late = world.request(path, presign=60, when=world.clock[0] - timedelta(seconds=61))
    assert (late.status_code, error_code(late)) == (403, "AccessDenied")

    now = world.clock[0]
    world.clock[0] = now + timedelta(seconds=901)
    try:
        expired = world.request("/alice-data/share/a.txt", "expiring")
        assert (expired.status_code, error_code(expired)) == (400, "ExpiredToken")
    finally:
        world.clock[0] = now


def test_list_buckets_shows_only_the_credentials_bucket(world: World) -> None:
    response = world.request("/")
    names = [e.text for e in ET.fromstring(response.content).iter(f"{NS}Name")]
    assert names == ["alice-data"]


def test_every_request_is_audited(world: World) -> None:
    # Undecodable bytes and a NUL in the key must not break the batch they are written in.
    hostile = world.request("/alice-data/share/photos/%FF%00bad")
    assert hostile.status_code in (400, 404), hostile.text
    world.request("/alice-data/secret/s.txt")
    world.request("/alice-data?list-type=2")
    rows = world.audit_rows()
    assert any(r.key is not None and r.key.startswith("share/photos/\ufffd") for r in rows)
    denied = [r for r in rows if r.key == "secret/s.txt" and r.status == 403]
    assert denied and denied[-1].details == {"error": "AccessDenied", "signature_version": 4}
    assert denied[-1].credential_id is not None
    assert any(r.action == "ListObjectsV2" and r.status == 200 for r in rows)


def test_each_credential_counts_what_it_served(world: World) -> None:
    access_key_id = world.keys["photos"].access_key_id

    def counters() -> tuple[int, int, int, Any]:
        async def read() -> tuple[int, int, int, Any]:
            await asyncio.sleep(0.3)  # the writer flushes every 0.05 s
            async with world.sessions() as session:
                c = await session.scalar(
                    select(Credential).where(Credential.access_key_id == access_key_id)
                )
                assert c is not None
                return c.bytes_served, c.objects_served, c.requests_served, c.last_used_at

        return world.client.portal.call(read)  # type: ignore[union-attr, no-any-return]

    before = counters()
    for _ in range(3):
        assert world.request("/alice-data/share/photos/p1.jpg").status_code == 200
    assert world.request("/alice-data/share/photos/p2.jpg").status_code == 200
    after = counters()
    assert [a - b for a, b in zip(after[:3], before[:3], strict=True)] == [3 * 1000 + 9, 4, 4]
    assert after[3] is not None and (before[3] is None or after[3] >= before[3])
