"""One behaviour for every storage backend: local, and s3 against SeaweedFS and moto.

Each test runs three times. Where SeaweedFS departs from AWS (see tests/fixtures/servers.py)
the expectation says so explicitly, so a change in SeaweedFS shows up here. Listing is in
test_storage_listing_conformance.py.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from storage.exceptions import (
    BackendUnavailable,
    IncompleteBody,
    InvalidPart,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    StorageError,
)
from storage.s3 import S3Storage
from tests.fixtures.servers import S3Server
from tests.support.storage_backends import (
    BACKENDS,
    MIB,
    Backend,
    chunks,
    list_all,
    md5,
    open_backend,
    put_bytes,
    read_all,
    utf8_sorted,
)

TRICKY_KEYS = [
    "../x",
    "../../etc/passwd",
    "/abs",
    "a//b",
    "dir/",
    "dir/x",
    ".",
    "..",
    "a/./b",
    "ünïcödé/日本語/😀",
    "+ % = & ? #",
    "with space",
    "back\\slash",
    "semi;colon,comma:colon@at",
    "quote\"'<xml>&amp;",
    "~tilde_under-dash.dot",
    "%2F%00%",
    "tab\tkey",
    "ctl\x01key",
    "k" * 1024,  # one 1024-byte segment: longer than any file name may be
    ("d" * 200 + "/") * 5 + "x" * 19,  # 1024 bytes in short segments
]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(request.param, request, tmp_path) as backend:
        yield backend


def seaweedfs_key(key: str) -> str | None:
    """The key SeaweedFS lists for `key`, or None when it refuses to store it."""
    key = key.replace("\\", "/")
    segments = key.split("/")
    if any(s in (".", "..") for s in segments) or any(len(s.encode()) > 255 for s in segments):
        return None
    return re.sub("/+", "/", key).lstrip("/")


def expected_key(kind: str, key: str) -> str | None:
    return seaweedfs_key(key) if kind == "seaweedfs" else key


# round trips


async def test_tricky_keys_round_trip(backend: Backend) -> None:
    stored: dict[str, str] = {}  # listed key -> key it was stored under
    for key in TRICKY_KEYS:
        body = b"body of " + key.encode()
        listed = expected_key(backend.kind, key)
        if listed is None:
            with pytest.raises(StorageError):
                await put_bytes(backend, key, body)
            continue
        info = await put_bytes(backend, key, body)
        assert info.etag == md5(body).hexdigest()
        stored[listed] = key

    for key in stored.values():
        data = await read_all(backend.storage, backend.bucket, key)
        if backend.kind == "seaweedfs" and key.endswith("/"):
            assert data == b""  # SeaweedFS keeps a trailing-slash key as a bare directory
        else:
            assert data == b"body of " + key.encode(), key
            assert (await backend.storage.head(backend.bucket, key)).size == len(data)

    listed_keys = [
        o.key for p in await list_all(backend.storage, backend.bucket) for o in p.objects
    ]
    if backend.kind == "seaweedfs":
        assert sorted(listed_keys) == sorted(stored)  # its order is not S3's, see below
    else:
        assert listed_keys == utf8_sorted(list(stored))
        assert set(stored) == set(TRICKY_KEYS)


async def test_zero_byte_object(backend: Backend) -> None:
    info = await put_bytes(backend, "empty", b"")
    assert (info.size, info.etag) == (0, "d41d8cd98f00b204e9800998ecf8427e")
    head = await backend.storage.head(backend.bucket, "empty")
    assert (head.size, head.etag) == (0, info.etag)
    stream = await backend.storage.get(backend.bucket, "empty")
    assert (stream.start, stream.end, stream.info.size) == (0, -1, 0)
    assert b"".join([c async for c in stream.body]) == b""
    with pytest.raises(InvalidRange):
        await backend.storage.get(backend.bucket, "empty", start=0)


async def test_content_type_metadata_and_headers_are_kept(backend: Backend) -> None:
    headers = {
        "Cache-Control": "max-age=60",
        "Content-Disposition": 'attachment; filename="report.txt"',
        "Content-Encoding": "identity",
        "Content-Language": "de-CH",
        "Expires": "Thu, 01 Dec 2033 16:00:00 GMT",
    }
    await put_bytes(
        backend,
        "doc.txt",
        b"hello",
        content_type="text/plain; charset=utf-8",
        metadata={"Owner": "alice", "x-trace": "abc 123"},
        headers={name.lower(): value for name, value in headers.items()},
    )
    head = await backend.storage.head(backend.bucket, "doc.txt")
    stream = await backend.storage.get(backend.bucket, "doc.txt")
    await stream.aclose()
    for info in (head, stream.info):
        assert info.content_type == "text/plain; charset=utf-8"
        assert dict(info.metadata) == {"owner": "alice", "x-trace": "abc 123"}
        assert dict(info.headers) == headers
        assert info.last_modified.tzinfo is not None

    await put_bytes(backend, "plain", b"x")
    assert (await backend.storage.head(backend.bucket, "plain")).content_type in (
        "binary/octet-stream",
        "application/octet-stream",
    )


async def test_overwrite_replaces_body_and_metadata(backend: Backend) -> None:
    await put_bytes(backend, "k", b"first", metadata={"v": "1"})
    await put_bytes(backend, "k", b"second!", metadata={"v": "2"})
    assert await read_all(backend.storage, backend.bucket, "k") == b"second!"
    head = await backend.storage.head(backend.bucket, "k")
    assert (head.size, dict(head.metadata)) == (7, {"v": "2"})
    page = await backend.storage.list(backend.bucket)
    assert [o.key for o in page.objects] == ["k"]


@pytest.mark.parametrize(("data", "size"), [(b"short", 10), (b"much too long", 4)])
async def test_wrong_body_size_stores_nothing(backend: Backend, data: bytes, size: int) -> None:
    with pytest.raises(IncompleteBody):
        await backend.storage.put(backend.bucket, "k", chunks(data, 2), size=size)
    with pytest.raises(NoSuchKey):
        await backend.storage.head(backend.bucket, "k")
    await put_bytes(backend, "after", b"the connection pool still works")


# ranged reads


@pytest.mark.parametrize(
    ("start", "end", "first", "last"),
    [
        (0, 0, 0, 0),
        (0, 9, 0, 9),
        (100, 199, 100, 199),
        (990, None, 990, 999),
        (995, 5000, 995, 999),
        (None, 10, 990, 999),
        (None, 5000, 0, 999),
        (None, None, 0, 999),
    ],
)
async def test_ranged_reads(
    backend: Backend, start: int | None, end: int | None, first: int, last: int
) -> None:
    data = os.urandom(1000)
    await put_bytes(backend, "ranged", data)
    stream = await backend.storage.get(backend.bucket, "ranged", start=start, end=end)
    body = b"".join([c async for c in stream.body])
    assert (stream.start, stream.end, stream.info.size) == (first, last, 1000)
    assert body == data[first : last + 1]


@pytest.mark.parametrize(("start", "end"), [(1000, None), (5000, 6000), (1000, 1000)])
async def test_range_beyond_the_end_is_invalid(
    backend: Backend, start: int | None, end: int | None
) -> None:
    await put_bytes(backend, "ranged", os.urandom(1000))
    with pytest.raises(InvalidRange):
        await backend.storage.get(backend.bucket, "ranged", start=start, end=end)


async def test_abandoned_read_releases_the_object(backend: Backend) -> None:
    data = os.urandom(3 * MIB)
    await put_bytes(backend, "big", data)
    for _ in range(3):
        stream = await backend.storage.get(backend.bucket, "big")
        first = await anext(stream.body)
        assert data.startswith(first)
        await stream.aclose()
    assert (
        await read_all(backend.storage, backend.bucket, "big", start=MIB, end=MIB + 9)
        == (data[MIB : MIB + 10])
    )


# multipart


async def test_multipart_upload(backend: Backend) -> None:
    parts_data = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    storage, bucket = backend.storage, backend.bucket
    upload_id = await storage.create_multipart(
        bucket, "multi/part.bin", content_type="application/x-test", metadata={"kind": "mp"}
    )
    parts = []
    # Out of order on purpose: part numbers, not arrival, decide the order.
    for number in (2, 1, 3):
        data = parts_data[number - 1]
        part = await storage.upload_part(
            bucket, "multi/part.bin", upload_id, number, chunks(data, 256 * 1024), size=len(data)
        )
        assert part.etag == md5(data).hexdigest()
        parts.append(part)
    listed = await storage.list_parts(bucket, "multi/part.bin", upload_id)
    assert [(p.part_number, p.size, p.etag) for p in listed] == [
        (n, len(d), md5(d).hexdigest()) for n, d in enumerate(parts_data, start=1)
    ]

    info = await storage.complete_multipart(
        bucket, "multi/part.bin", upload_id, sorted(parts, key=lambda p: p.part_number)
    )
    digests = b"".join(md5(d).digest() for d in parts_data)
    assert info.etag == f"{md5(digests).hexdigest()}-3"
    assert info.size == sum(map(len, parts_data))
    head = await storage.head(bucket, "multi/part.bin")
    assert (head.etag, head.size, head.content_type) == (info.etag, info.size, "application/x-test")
    assert dict(head.metadata) == {"kind": "mp"}
    whole = md5()
    stream = await storage.get(bucket, "multi/part.bin")
    async for chunk in stream.body:
        whole.update(chunk)
    assert whole.hexdigest() == md5(b"".join(parts_data)).hexdigest()
    across = await read_all(storage, bucket, "multi/part.bin", start=5 * MIB - 5, end=5 * MIB + 4)
    assert across == parts_data[0][-5:] + parts_data[1][:5]
    with pytest.raises(NoSuchUpload):
        await storage.list_parts(bucket, "multi/part.bin", upload_id)


async def test_multipart_abort_and_small_parts(backend: Backend) -> None:
    storage, bucket = backend.storage, backend.bucket
    upload_id = await storage.create_multipart(bucket, "aborted")
    one = await storage.upload_part(bucket, "aborted", upload_id, 1, chunks(b"a" * 10), size=10)
    two = await storage.upload_part(bucket, "aborted", upload_id, 2, chunks(b"b" * 10), size=10)
    assert [p.part_number for p in await storage.list_parts(bucket, "aborted", upload_id)] == [1, 2]
    # Every part but the last must be at least 5 MiB.
    with pytest.raises(InvalidPart):
        await storage.complete_multipart(bucket, "aborted", upload_id, [one, two])
    await storage.abort_multipart(bucket, "aborted", upload_id)
    with pytest.raises(NoSuchUpload):
        await storage.list_parts(bucket, "aborted", upload_id)
    # moto fails there with a KeyError, which reaches us as a 500.
    gone = BackendUnavailable if backend.kind == "moto" else NoSuchUpload
    with pytest.raises(gone):
        await storage.upload_part(bucket, "aborted", upload_id, 3, chunks(b"c"), size=1)
    with pytest.raises(NoSuchKey):
        await storage.head(bucket, "aborted")


async def test_multipart_rejects_a_wrong_etag(backend: Backend) -> None:
    storage, bucket = backend.storage, backend.bucket
    upload_id = await storage.create_multipart(bucket, "wrong")
    part = await storage.upload_part(bucket, "wrong", upload_id, 1, chunks(b"a"), size=1)
    forged = type(part)(part.part_number, part.size, md5(b"other").hexdigest())
    with pytest.raises(InvalidPart):
        await storage.complete_multipart(bucket, "wrong", upload_id, [forged])
    await storage.abort_multipart(bucket, "wrong", upload_id)


# delete and errors


async def test_delete(backend: Backend) -> None:
    await put_bytes(backend, "gone", b"x")
    await backend.storage.delete(backend.bucket, "gone")
    with pytest.raises(NoSuchKey):
        await backend.storage.head(backend.bucket, "gone")
    await backend.storage.delete(backend.bucket, "gone")  # deleting twice is fine
    assert (await backend.storage.list(backend.bucket)).objects == []


async def test_missing_key_and_bucket(backend: Backend) -> None:
    storage, bucket = backend.storage, backend.bucket
    with pytest.raises(NoSuchKey):
        await storage.head(bucket, "missing")
    with pytest.raises(NoSuchKey):
        await storage.get(bucket, "missing")
    assert await storage.bucket_exists(bucket)
    absent = f"absent-{uuid.uuid4().hex[:12]}"
    assert not await storage.bucket_exists(absent)
    with pytest.raises(NoSuchBucket):
        await storage.list(absent)
    with pytest.raises(NoSuchBucket):
        await storage.head(absent, "k")
    with pytest.raises(NoSuchBucket):
        await storage.get(absent, "k")
    with pytest.raises(NoSuchBucket):
        await storage.put(absent, "k", chunks(b"x"), size=1)
    await storage.create_bucket(bucket)  # creating an existing own bucket is fine
    await storage.ping()


# addressing


class _Loopback(AbstractResolver):
    """Resolves every name to 127.0.0.1, so <bucket>.localhost reaches the test server."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("kind", ["seaweedfs", "moto"])
async def test_virtual_host_addressing(request: pytest.FixtureRequest, kind: str) -> None:
    server: S3Server = request.getfixturevalue(
        "seaweedfs" if kind == "seaweedfs" else "moto_server"
    )
    endpoint = server.endpoint_url.replace("127.0.0.1", "localhost")
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=_Loopback()), auto_decompress=False
    ) as session:
        storage = S3Storage(
            endpoint,
            server.region,
            server.access_key_id,
            server.secret_access_key,
            addressing_style="virtual",
            session=session,
        )
        bucket = f"vhost-{uuid.uuid4().hex[:12]}"
        await storage.create_bucket(bucket)
        key = "dir/with space/ünï+%.txt"
        await storage.put(bucket, key, chunks(b"virtual"), size=7, metadata={"m": "1"})
        assert [o.key for o in (await storage.list(bucket)).objects] == [key]
        assert await read_all(storage, bucket, key, start=1, end=3) == b"irt"
        assert dict((await storage.head(bucket, key)).metadata) == {"m": "1"}
        await storage.close()
        assert not session.closed  # a session passed in belongs to the caller
    # Path style sees the same bucket.
    assert server.client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"virtual"
