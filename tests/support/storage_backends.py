"""Each storage backend with a fresh bucket, for the conformance tests: local, and s3 against
the SeaweedFS and moto servers of tests/fixtures/servers.py; with helpers to put, read and
list whole objects.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.base import ListPage, ObjectInfo, Storage
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.fixtures.servers import S3Server

MIB = 1024 * 1024


def md5(data: bytes = b"") -> hashlib._Hash:
    return hashlib.md5(data, usedforsecurity=False)


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def read_all(storage: Storage, bucket: str, key: str, **kw: int | None) -> bytes:
    stream = await storage.get(bucket, key, **kw)
    try:
        return b"".join([chunk async for chunk in stream.body])
    finally:
        await stream.aclose()


@dataclass
class Backend:
    kind: str  # "local", "seaweedfs" or "moto"
    storage: Storage
    bucket: str
    server: S3Server | None


def s3_storage(server: S3Server) -> S3Storage:
    return S3Storage(
        server.endpoint_url, server.region, server.access_key_id, server.secret_access_key
    )


async def put_bytes(backend: Backend, key: str, data: bytes, **kw: object) -> ObjectInfo:
    return await backend.storage.put(backend.bucket, key, chunks(data), size=len(data), **kw)  # type: ignore[arg-type]


async def list_all(storage: Storage, bucket: str, **kw: object) -> list[ListPage]:
    """Every page of a listing, following next_start_after."""
    pages: list[ListPage] = []
    start_after = str(kw.pop("start_after", ""))
    while True:
        page = await storage.list(bucket, start_after=start_after, **kw)  # type: ignore[arg-type]
        pages.append(page)
        if not page.is_truncated:
            return pages
        assert page.next_start_after is not None
        assert page.next_start_after.encode() > start_after.encode(), "paging must advance"
        start_after = page.next_start_after
        assert len(pages) < 100


def page_summary(pages: list[ListPage]) -> list[tuple[list[str], list[str], bool]]:
    return [([o.key for o in p.objects], p.common_prefixes, p.is_truncated) for p in pages]


BACKENDS = ["local", "seaweedfs", "moto"]


@asynccontextmanager
async def open_backend(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    """The backend named `kind` (one of BACKENDS) with a new bucket of its own."""
    server: S3Server | None = None
    storage: Storage
    if kind == "local":
        storage = LocalStorage(tmp_path / "storage")
    else:
        server = request.getfixturevalue("seaweedfs" if kind == "seaweedfs" else "moto_server")
        storage = s3_storage(server)
    bucket = f"conf-{uuid.uuid4().hex[:16]}"
    await storage.create_bucket(bucket)
    try:
        yield Backend(kind, storage, bucket, server)
    finally:
        await storage.close()
