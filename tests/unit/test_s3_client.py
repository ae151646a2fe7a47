"""The s3 backend's wire details: URL encoding, retries, error translation, the factory."""

from __future__ import annotations

import functools
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from multidict import CIMultiDict, CIMultiDictProxy

from storage.base import MAX_KEY_BYTES, PartInfo
from storage.exceptions import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
)
from storage.factory import open_storage
from storage.local import LocalStorage
from storage.s3 import S3Storage
from storage.s3_answers import object_info
from storage.s3_listing import beyond, page_from, request_start_after
from storage.s3_wire import Endpoint, build_url
from storage.s3_xml import ListedObject, ListResult

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEYS = [
    "../x",
    "/abs",
    "a//b",
    "dir/",
    ".",
    "..",
    "+ % = & ? #",
    "ünï/😀",
    "back\\slash",
    "~tilde_-.",
    "%2F",
    "tab\tkey",
    "ctl\x01",
]


@functools.cache
def botocore_client(style: str) -> S3Client:
    # Made once per style: a boto3 client takes a noticeable fraction of a second to build.
    return boto3.session.Session().client(
        "s3",
        endpoint_url="http://s3.example.test:9000",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(s3={"addressing_style": style}),
    )


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("style", ["path", "virtual"])
def test_urls_match_botocore(key: str, style: str) -> None:
    client = botocore_client(style)
    presigned = urlsplit(
        client.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": key})
    )
    url, host = build_url(Endpoint.parse("http://s3.example.test:9000"), style, "bucket", key)
    ours = urlsplit(url)
    assert ours.path == presigned.path
    assert host == presigned.netloc
    prefix = "/bucket/" if style == "path" else "/"
    assert unquote(ours.path).removeprefix(prefix) == key


@pytest.mark.parametrize(
    ("url", "netloc", "base"),
    [
        ("http://127.0.0.1:8333", "127.0.0.1:8333", ""),
        ("https://s3.example.com/", "s3.example.com", ""),
        ("https://s3.example.com:443/store", "s3.example.com", "/store"),
        ("http://[::1]:9000", "[::1]:9000", ""),
    ],
)
def test_endpoint_parsing(url: str, netloc: str, base: str) -> None:
    endpoint = Endpoint.parse(url)
    assert (endpoint.netloc(), endpoint.base_path) == (netloc, base)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:8333",
        "ftp://host",
        "http://",
        "http://host:port",
        "http://host:99999",
        "http://user:pw@host",
        "http://host/?x=1",
    ],
)
def test_malformed_endpoints_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="endpoint_url"):
        open_storage("s3", endpoint_url=url, access_key_id="k", secret_access_key="s")


def test_factory(tmp_path: Path) -> None:
    assert isinstance(open_storage("local", root=tmp_path), LocalStorage)
    s3 = open_storage(
        "s3",
        endpoint_url="http://127.0.0.1:8333",
        access_key_id="k",
        secret_access_key="s",
        addressing_style="virtual",
    )
    assert isinstance(s3, S3Storage)
    with pytest.raises(ConfigError, match="unknown storage backend 'ceph'"):
        open_storage("ceph")
    with pytest.raises(ConfigError, match="addressing_style"):
        open_storage(
            "s3",
            endpoint_url="http://h",
            access_key_id="k",
            secret_access_key="s",
            addressing_style="vhost",
        )
    with pytest.raises(ConfigError, match="access_key_id"):
        open_storage("s3", endpoint_url="http://h")


# A tiny S3 impostor: each test scripts the answers.

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def fake_s3() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def error(status: int, code: str) -> web.Response:
    body = f"<Error><Code>{code}</Code><Message>scripted</Message></Error>"
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


def storage_for(url: str, delays: list[float]) -> S3Storage:
    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    return S3Storage(url, "us-east-1", "key", "secret", retries=2, backoff=0.5, sleep=sleep)


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_transient_errors_are_retried(fake_s3: Callable[[Handler], Awaitable[str]]) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        if len(seen) < 3:
            return error(503, "SlowDown")
        return web.Response(status=200)

    delays: list[float] = []
    storage = storage_for(await fake_s3(handler), delays)
    try:
        assert await storage.bucket_exists("bucket")
    finally:
        await storage.close()
    assert seen == ["HEAD"] * 3
    assert len(delays) == 2 and 0 <= delays[0] <= 0.5 and 0 <= delays[1] <= 1.0


async def test_persistent_5xx_is_backend_unavailable(
    fake_s3: Callable[[Handler], Awaitable[str]],
) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(request.method)
        return error(500, "InternalError")

    storage = storage_for(await fake_s3(handler), [])
    try:
        with pytest.raises(BackendUnavailable, match="500"):
            await storage.head("bucket", "key")
        assert len(seen) == 3
        # A streamed upload cannot be replayed: one attempt only.
        with pytest.raises(BackendUnavailable):
            await storage.put("bucket", "key", body(b"abc"), size=3)
        assert len(seen) == 4
    finally:
        await storage.close()


async def test_unreachable_endpoint(fake_s3: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response()

    url = await fake_s3(handler)
    storage = storage_for(url.rsplit(":", 1)[0] + ":1", [])
    try:
        with pytest.raises(BackendUnavailable):
            await storage.ping()
        with pytest.raises(BackendUnavailable):
            await storage.put("bucket", "key", body(b"abc"), size=3)
    finally:
        await storage.close()


async def test_errors_are_translated(fake_s3: Callable[[Handler], Awaitable[str]]) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            # CompleteMultipartUpload may fail after a 200.
            return web.Response(
                status=200,
                body=b'<?xml version="1.0"?>\n<Error><Code>InvalidPart</Code></Error>',
            )
        if request.path.endswith("/denied"):
            return error(403, "AccessDenied")
        if request.method == "HEAD":
            return web.Response(status=404)
        return error(404, "NoSuchKey")

    storage = storage_for(await fake_s3(handler), [])
    try:
        with pytest.raises(NoSuchKey):
            await storage.get("bucket", "missing")
        with pytest.raises(NoSuchBucket):
            await storage.head("bucket", "missing")  # 404 on the bucket too
        with pytest.raises(BackendError) as denied:
            await storage.get("bucket", "denied")
        assert (denied.value.status, denied.value.code) == (403, "AccessDenied")
        with pytest.raises(InvalidPart):
            await storage.complete_multipart("bucket", "key", "upload", [PartInfo(1, 1, "e")])
    finally:
        await storage.close()


async def test_gzip_bodies_pass_through_undecoded(
    fake_s3: Callable[[Handler], Awaitable[str]],
) -> None:
    packed = gzip.compress(b"hello " * 100)

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.headers["Accept-Encoding"] == "identity"
        return web.Response(
            body=packed,
            headers={"Content-Encoding": "gzip", "ETag": '"abc"', "Content-Type": "text/plain"},
        )

    storage = storage_for(await fake_s3(handler), [])
    try:
        stream = await storage.get("bucket", "archive.txt")
        assert b"".join([c async for c in stream.body]) == packed
        assert stream.info.headers == {"Content-Encoding": "gzip"}
    finally:
        await storage.close()


@pytest.mark.parametrize(
    ("status", "code", "healthy"),
    [(200, "", True), (403, "AccessDenied", True), (403, "SignatureDoesNotMatch", False)],
)
async def test_ping(
    fake_s3: Callable[[Handler], Awaitable[str]], status: int, code: str, healthy: bool
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        assert (request.method, request.path) == ("GET", "/")
        assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=key/")
        return error(status, code) if code else web.Response(body=b"<ListAllMyBucketsResult/>")

    storage = storage_for(await fake_s3(handler), [])
    try:
        if healthy:
            await storage.ping()
        else:
            with pytest.raises(BackendUnavailable, match=code):
                await storage.ping()
    finally:
        await storage.close()


# listing rules held client-side (s3_listing.py)


@pytest.mark.parametrize("prefix", ["", "photos/", "é/", "x" * 1021, "x" * 1022, "x" * 1023])
def test_beyond_is_after_every_key_under_the_prefix(prefix: str) -> None:
    bound = beyond(prefix).encode()
    assert len(bound) <= MAX_KEY_BYTES and bound.startswith(prefix.encode())
    room = MAX_KEY_BYTES - len(prefix.encode())
    greatest_keys = [
        prefix + "\U0010ffff" * (room // 4),
        prefix + "\uffff" * (room // 3),
        prefix + "\x7f" * room,
        prefix + "\U0010ffff" * (room // 4) + "\x7f" * (room % 4),
        prefix + "\U0010fffe",
    ]
    for key in greatest_keys:
        raw = key.encode()
        if len(raw) <= MAX_KEY_BYTES:
            assert raw <= bound, key[-3:]


def test_start_after_under_a_common_prefix_skips_it() -> None:
    assert request_start_after("", "/", "photos/2024/x.jpg") == beyond("photos/")
    assert request_start_after("photos/", "/", "photos/2024/x.jpg") == beyond("photos/2024/")
    assert request_start_after("", "/", "top") == "top"
    assert request_start_after("", "", "photos/x") == "photos/x"
    assert request_start_after("b", "/", "a/x") == "a/x"


def listed(*keys: str) -> list[ListedObject]:
    return [ListedObject(k, 1, "e", datetime(2024, 1, 1, tzinfo=UTC)) for k in keys]


def test_server_answers_are_rolled_up_and_checked() -> None:
    # What SeaweedFS answers after start_after "photos/2024/feb.jpg" (delimiter "/"): the
    # prefix the start lies under again, and a deeper prefix rolled up on its own.
    result = ListResult(listed("zeta"), ["photos/", "photos/z/"], False)
    page = page_from(result, "", "/", "photos/2024/feb.jpg")
    assert ([o.key for o in page.objects], page.common_prefixes) == (["zeta"], [])
    # A key that belongs under a common prefix is rolled into it, once.
    result = ListResult(listed("a/1", "a/2", "b"), ["a/"], True)
    page = page_from(result, "", "/", "")
    assert ([o.key for o in page.objects], page.common_prefixes) == (["b"], ["a/"])
    assert page.next_start_after == "b"
    # A truncated answer that does not move forward would page forever.
    with pytest.raises(BackendError, match="does not advance"):
        page_from(ListResult([], ["pho"], True), "", "o", "pho")


@pytest.mark.parametrize(
    ("headers", "is_md5"),
    [
        ({}, True),
        ({"x-amz-server-side-encryption": "AES256"}, True),
        ({"x-amz-server-side-encryption": "aws:kms"}, False),
        ({"x-amz-server-side-encryption": "aws:kms:dsse"}, False),
        ({"x-amz-server-side-encryption-customer-algorithm": "AES256"}, False),
    ],
)
def test_etags_of_sse_kms_and_sse_c_objects_are_not_taken_for_md5s(
    headers: dict[str, str], is_md5: bool
) -> None:
    answer = CIMultiDictProxy(CIMultiDict({"ETag": '"' + "a" * 32 + '"', **headers}))
    assert object_info("k", answer, 1).etag_is_md5 is is_md5
