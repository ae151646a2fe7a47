"""Whole objects in and out of any `Storage`, for tests that fill or check a bucket."""

from __future__ import annotations

from collections.abc import AsyncIterator

from storage.base import Storage


async def stream_of(data: bytes) -> AsyncIterator[bytes]:
    """`data` as a streamed body (the path a copy's reads take), not an in-memory one."""
    yield data


async def read_object(storage: Storage, bucket: str, key: str) -> bytes:
    stream = await storage.get(bucket, key)
    try:
        return b"".join([chunk async for chunk in stream.body])
    finally:
        await stream.aclose()
