"""Part layouts on every backend: local, and s3 against SeaweedFS and moto.

The gateway answers `partNumber` reads from `Storage.part_span`; SeaweedFS says where a part
lies in its HEAD answer (Content-Range), moto only how long it is, and the local backend
keeps its parts' sizes. All three must agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.base import PartSpan
from storage.exceptions import InvalidPartNumber, NoSuchKey, PartsUnknown
from storage.local import LocalStorage
from tests.support.storage_backends import (
    BACKENDS,
    MIB,
    Backend,
    chunks,
    open_backend,
    put_bytes,
    read_all,
)

SIZES = [5 * MIB, 5 * MIB, 1000]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(request.param, request, tmp_path) as backend:
        yield backend


async def _multipart(backend: Backend, key: str) -> list[bytes]:
    storage, bucket = backend.storage, backend.bucket
    data = [bytes([n]) * size for n, size in enumerate(SIZES, start=1)]
    upload_id = await storage.create_multipart(bucket, key)
    parts = [
        await storage.upload_part(bucket, key, upload_id, n, chunks(d, MIB), size=len(d))
        for n, d in enumerate(data, start=1)
    ]
    await storage.complete_multipart(bucket, key, upload_id, parts)
    return data


async def test_part_spans(backend: Backend) -> None:
    storage, bucket = backend.storage, backend.bucket
    data = await _multipart(backend, "mp.bin")
    first = 0
    for number, part in enumerate(data, start=1):
        info, span = await storage.part_span(bucket, "mp.bin", number)
        assert span == PartSpan(number, 3, first, first + len(part) - 1)
        assert info.size == sum(SIZES) and info.etag.endswith("-3")
        got = await read_all(storage, bucket, "mp.bin", start=span.first, end=span.last)
        assert got == part
        first += len(part)
    with pytest.raises(InvalidPartNumber):
        await storage.part_span(bucket, "mp.bin", 4)


async def test_single_part_and_empty_objects(backend: Backend) -> None:
    storage, bucket = backend.storage, backend.bucket
    await put_bytes(backend, "one", b"hello")
    await put_bytes(backend, "empty", b"")
    info, span = await storage.part_span(bucket, "one", 1)
    assert (info.size, span) == (5, PartSpan(1, 1, 0, 4))
    for key, number in [("one", 2), ("empty", 1)]:
        with pytest.raises(InvalidPartNumber):
            await storage.part_span(bucket, key, number)
    with pytest.raises(NoSuchKey):
        await storage.part_span(bucket, "missing", 1)


async def test_local_index_without_part_sizes(tmp_path: Path) -> None:
    """An object completed before the index kept part sizes: its layout is unknown, said so."""
    storage = LocalStorage(tmp_path, min_part_size=1)
    await storage.create_bucket("old-index")
    try:
        backend = Backend("local", storage, "old-index", None)
        await _multipart(backend, "mp.bin")
        await storage.close()
        with sqlite3.connect(tmp_path / "old-index" / "index.sqlite3") as db:
            db.execute("UPDATE objects SET part_sizes = NULL")
        with pytest.raises(PartsUnknown):
            await storage.part_span("old-index", "mp.bin", 1)
    finally:
        await storage.close()
