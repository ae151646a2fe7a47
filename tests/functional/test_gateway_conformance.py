"""The read path as S3 answers it: partNumber, HTTP dates, Date-signed SigV4, SigV2, 405s.

Each test is one row of issue 17's table (or one of the SigV2 rules), in-process against the
local backend; tests/integration/test_differential.py sends the same kinds of requests to
real S3 servers directly and through Ferry, side by side.
"""

from __future__ import annotations

import asyncio
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email.utils import formatdate
from typing import Any

import pytest
from sqlalchemy import select

from db.models import AuditLog, User
from gateway.app import GatewayApp
from portability.buckets import create_bucket
from storage.local import LocalStorage
from sts.issue import IssueRequest, issue
from tests.support.gateway_world import BASE, FILES, Key, World, error_code, open_world
from tests.support.signing import sign_v2

MIB = 1024 * 1024
PARTS = [b"a" * (5 * MIB), b"b" * (5 * MIB), b"c" * 1000]
MULTIPART = "share/photos/multipart.bin"
SMALL = "/alice-data/share/photos/p1.jpg"


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(database_url, tmp_path_factory.mktemp("gateway-storage")) as opened:
        yield opened


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(scope="module")
def multipart(world: World) -> str:
    async def upload() -> None:
        storage = LocalStorage(world.root, min_part_size=1)
        upload_id = await storage.create_multipart("gw-alice", MULTIPART)
        parts = [
            await storage.upload_part(
                "gw-alice", MULTIPART, upload_id, n, _once(data), size=len(data)
            )
            for n, data in enumerate(PARTS, start=1)
        ]
        await storage.complete_multipart("gw-alice", MULTIPART, upload_id, parts)
        await storage.close()

    world.client.portal.call(upload)  # type: ignore[union-attr]
    return "/alice-data/" + MULTIPART


def issue_key(world: World, bucket: str, backend_bucket: str, **grant: Any) -> Key:
    async def make() -> Key:
        async with world.sessions.begin() as session:
            user = await session.scalar(select(User).where(User.email == world.owner_email))
            assert user is not None
            storage = LocalStorage(world.root)
            try:
                record = await create_bucket(
                    session, storage, bucket, owner_email=user.email, backend_bucket=backend_bucket
                )
            finally:
                await storage.close()
            issued = await issue(
                session, world.master_key, user, record, IssueRequest(**grant), now=world.clock[0]
            )
            return Key(issued.credential.access_key_id, issued.secret, issued.session_token)

    return world.client.portal.call(make)  # type: ignore[union-attr, no-any-return]


# partNumber


def test_get_part_of_a_multipart_object(world: World, multipart: str) -> None:
    response = world.request(multipart + "?partNumber=2")
    assert response.status_code == 206
    assert response.content == PARTS[1]
    assert response.headers["x-amz-mp-parts-count"] == "3"
    assert response.headers["content-range"] == f"bytes {5 * MIB}-{10 * MIB - 1}/{10 * MIB + 1000}"
    assert response.headers["etag"].endswith('-3"')
    last = world.request(multipart + "?partNumber=3")
    assert (last.status_code, last.content) == (206, PARTS[2])


def test_head_part(world: World, multipart: str) -> None:
    response = world.request(multipart + "?partNumber=1", method="HEAD")
    assert response.status_code == 206
    assert response.headers["content-length"] == str(5 * MIB)
    assert response.headers["x-amz-mp-parts-count"] == "3"
    assert response.headers["content-range"] == f"bytes 0-{5 * MIB - 1}/{10 * MIB + 1000}"


def test_part_out_of_range(world: World, multipart: str) -> None:
    for path in [multipart + "?partNumber=4", SMALL + "?partNumber=2"]:
        response = world.request(path)
        assert (response.status_code, error_code(response)) == (416, "InvalidPartNumber"), path
        head = world.request(path, method="HEAD")
        assert head.status_code == 416, path
    single = world.request(SMALL + "?partNumber=1")
    assert single.status_code == 206
    assert single.content == FILES["share/photos/p1.jpg"]
    assert "x-amz-mp-parts-count" not in single.headers  # put whole: no count, as S3


@pytest.mark.parametrize("value", ["0", "10001", "abc", "%C2%B2", "-1", "1.0", "%2B1", ""])
def test_part_number_that_is_no_number(world: World, value: str) -> None:
    response = world.request(f"{SMALL}?partNumber={value}")
    assert (response.status_code, error_code(response)) == (400, "InvalidArgument")


def test_part_with_range_is_refused(world: World, multipart: str) -> None:
    response = world.request(multipart + "?partNumber=1", headers={"Range": "bytes=0-1"})
    assert (response.status_code, error_code(response)) == (400, "InvalidRequest")


# HTTP dates, Date-signed SigV4, methods, listings, buckets


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 01 Jan 2100 00:00:00 GMT",
        "Friday, 01-Jan-100 00:00:00 GMT",
        "Fri Jan  1 00:00:00 2100",
        "Fri, 01 Jan 2100 00:00:00 -0000",
    ],
)
def test_if_modified_since_in_every_form(world: World, date: str) -> None:
    response = world.request(SMALL, headers={"If-Modified-Since": date})
    assert response.status_code in (304, 200)
    if "-100 " not in date:  # RFC 850's two-digit year form; this one is not a date
        assert response.status_code == 304, date


@pytest.mark.parametrize("header", ["If-Modified-Since", "If-Unmodified-Since"])
@pytest.mark.parametrize("value", ["garbage", "Fri, 99 Foo 2100 99:99:99 GMT", "", "\x00"])
def test_an_invalid_date_is_ignored(world: World, header: str, value: str) -> None:
    response = world.request(SMALL, headers={header: value})
    assert response.status_code == 200, value


def test_sigv4_signed_with_date_alone(world: World) -> None:
    # botocore's S3SigV4Auth sees the Date header, keeps it (as `…, -0000`), sends no
    # X-Amz-Date and signs the ISO form of that moment.
    date = formatdate(world.clock[0].timestamp(), usegmt=True)
    response = world.request(SMALL, headers={"Date": date})
    assert "x-amz-date" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 200, response.text
    assert response.content == FILES["share/photos/p1.jpg"]


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "PROPFIND", "PATCH", "MKCOL"])
def test_other_methods_are_not_allowed(world: World, method: str) -> None:
    response = world.client.request(method, BASE + SMALL)
    assert response.status_code == 405
    if method != "HEAD":
        assert error_code(response) == "MethodNotAllowed"


def test_listing_prefix_is_not_url_encoded_unless_asked(world: World) -> None:
    key = issue_key(world, "newline-data", "gw-alice", prefixes=("",))
    world.keys["everything"] = key
    response = world.request("/newline-data?prefix=%0A", "everything")
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)
    assert root.findtext("{http://s3.amazonaws.com/doc/2006-03-01/}Prefix") == "\n"
    assert b"%0A" not in response.content
    encoded = world.request("/newline-data?prefix=%0A&encoding-type=url", "everything")
    assert b"<Prefix>%0A</Prefix>" in encoded.content


def test_head_bucket_whose_backend_bucket_is_gone(world: World) -> None:
    world.keys["gone"] = issue_key(world, "gone-data", "gw-gone", prefixes=("",))
    assert world.request("/gone-data", "gone", method="HEAD").status_code == 200
    shutil.rmtree(world.root / "gw-gone")
    assert world.request("/gone-data", "gone", method="HEAD").status_code == 404
    location = world.request("/gone-data?location", "gone")
    assert (location.status_code, error_code(location)) == (404, "NoSuchBucket")


@pytest.mark.parametrize("expires", ["%C2%B2", "-5", "99999999999999999999999", "1e3", ""])
def test_presigned_expires_that_is_no_number(world: World, expires: str) -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=FRYAAAAAAAAAAAAAAAAA%2F20261201"
        f"%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T000000Z&X-Amz-Expires={expires}"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
    )
    response = world.client.get(f"{SMALL}?{query}")
    assert response.status_code == 400
    assert error_code(response) == "AuthorizationQueryParametersError"


# SigV2


def v2(world: World, path: str, key: str = "photos", **kw: Any) -> Any:
    k = world.keys[key]
    token = kw.pop("token", k.token)
    signed = sign_v2(BASE + path, access_key_id=k.access_key_id, secret=k.secret, token=token, **kw)
    # A presigned URL travels alone: botocore's headers stay behind, as boto3's do.
    headers = {} if kw.get("presign") else dict(signed.headers.items())
    return world.client.request(signed.method, signed.url, headers=headers)


def test_sigv2_header_and_presigned(world: World) -> None:
    for presign in (None, 600):
        for key in ("photos", "tokenless"):
            path = SMALL if key == "photos" else "/alice-data/share/a.txt"
            response = v2(world, path, key, presign=presign)
            assert response.status_code == 200, (key, presign, response.text)


def test_sigv2_sub_resources_and_overrides(world: World, multipart: str) -> None:
    response = v2(world, multipart + "?partNumber=3", presign=600)
    assert (response.status_code, response.content) == (206, PARTS[2])
    disposition = 'attachment; filename="x y.jpg"'
    response = v2(world, SMALL + "?response-content-disposition=" + disposition.replace(" ", "%20"))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == disposition
    listing = v2(world, "/alice-data?prefix=share%2Fphotos%2F&delimiter=%2F")
    assert listing.status_code == 200, listing.text


def test_sigv2_refusals(world: World) -> None:
    wrong = Key(world.keys["photos"].access_key_id, "x" * 40, world.keys["photos"].token)
    world.keys["wrong-secret"] = wrong
    assert error_code(v2(world, SMALL, "wrong-secret")) == "SignatureDoesNotMatch"
    missing = v2(world, SMALL, token=None)
    assert (missing.status_code, error_code(missing)) == (400, "InvalidToken")
    extra = v2(world, "/alice-data/share/a.txt", "tokenless", token="FRYTsomething")
    assert (extra.status_code, error_code(extra)) == (400, "InvalidToken")
    assert error_code(v2(world, SMALL, "revoked")) == "InvalidAccessKeyId"
    # The photos key expires in an hour: a URL that would outlive it is refused.
    late = v2(world, SMALL, presign=7200)
    assert (late.status_code, error_code(late)) == (403, "AccessDenied")
    expired = v2(world, SMALL, presign=-10)
    assert (expired.status_code, error_code(expired)) == (403, "AccessDenied")
    for query in ["AWSAccessKeyId=FRYAAAAAAAAAAAAAAAAA&Signature=x", "Signature=x&Expires=%C2%B2"]:
        response = world.client.get(f"{SMALL}?{query}")
        assert (response.status_code, error_code(response)) == (403, "AccessDenied"), query
    now = world.clock[0]
    world.clock[0] = now + timedelta(minutes=16)
    try:
        skewed = v2(world, SMALL)
        assert (skewed.status_code, error_code(skewed)) == (403, "RequestTimeTooSkewed")
    finally:
        world.clock[0] = now
    malformed = world.client.get(SMALL, headers={"Authorization": "AWS nocolon", "Date": "x"})
    assert (malformed.status_code, error_code(malformed)) == (400, "InvalidArgument")


def test_sigv2_is_audited_as_such(world: World) -> None:
    assert v2(world, "/alice-data/share/photos/p2.jpg").status_code == 200

    async def rows() -> list[AuditLog]:
        await asyncio.sleep(0.3)
        async with world.sessions() as session:
            found = await session.scalars(
                select(AuditLog).where(AuditLog.key == "share/photos/p2.jpg")
            )
            return list(found.all())

    found = world.client.portal.call(rows)  # type: ignore[union-attr]
    assert any((r.details or {}).get("signature_version") == 2 for r in found)


def test_sigv2_can_be_turned_off(world: World) -> None:
    app = world.client.app
    assert isinstance(app, GatewayApp)
    app.auth.sigv2_enabled = False
    try:
        response = v2(world, SMALL)
        assert (response.status_code, error_code(response)) == (400, "InvalidRequest")
        assert v2(world, SMALL, presign=600).status_code == 400
    finally:
        app.auth.sigv2_enabled = True
