"""Bytes written in order become one storage object, uploaded as a multipart upload.

Memory stays at about three upload chunks whatever the object's size: one being filled, one
queued, one on the wire. The upload runs beside the writer, so compressing the next chunk
overlaps sending the last one, and a slow backend slows the writer down (the queue is the
back-pressure). Nothing touches the local disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping

from storage.base import ObjectInfo, PartInfo, Storage

_MAX_PARTS = 10_000


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StorageSink:
    """Write, then `close()` (complete) or `abort()`. Not for use from several tasks."""

    def __init__(
        self,
        storage: Storage,
        bucket: str,
        key: str,
        *,
        chunk_size: int,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.storage, self.bucket, self.key = storage, bucket, key
        self.chunk_size = chunk_size
        self.content_type, self.headers = content_type, dict(headers or {})
        self.size = 0
        self.upload_id: str | None = None
        self._buffer = bytearray()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._uploader: asyncio.Task[list[PartInfo]] | None = None
        self._closed = False
        self._queued = 0

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self._chunk_for(self._queued):
            await self._send(bytes(self._buffer))
            self._buffer.clear()

    def _chunk_for(self, part_number: int) -> int:
        # Within S3's 10,000 parts: double the chunk every 1,000 parts (80 GiB at 8 MiB
        # before the first doubling), so only enormous parts cost more memory.
        return self.chunk_size << min(part_number // 1000, 9)

    async def _send(self, chunk: bytes) -> None:
        if self._uploader is None:
            self.upload_id = await self.storage.create_multipart(
                self.bucket, self.key, content_type=self.content_type, headers=self.headers
            )
            self._uploader = asyncio.get_running_loop().create_task(self._upload_all())
        if self._uploader.done():
            self._uploader.result()  # raises the upload's failure here, in the writer
        self._queued += 1
        if self._queued > _MAX_PARTS:
            raise ValueError("object too large for a multipart upload")
        put = asyncio.ensure_future(self._queue.put(chunk))
        done, _ = await asyncio.wait({put, self._uploader}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            self._uploader.result()

    async def _upload_all(self) -> list[PartInfo]:
        assert self.upload_id is not None
        parts: list[PartInfo] = []
        while (chunk := await self._queue.get()) is not None:
            parts.append(
                await self.storage.upload_part(
                    self.bucket,
                    self.key,
                    self.upload_id,
                    len(parts) + 1,
                    _once(chunk),
                    size=len(chunk),
                )
            )
        return parts

    async def close(self) -> ObjectInfo:
        """Finish the object; returns what the backend stored."""
        self._closed = True
        if self._uploader is None:
            data = bytes(self._buffer)
            self._buffer.clear()
            return await self.storage.put(
                self.bucket,
                self.key,
                _once(data),
                size=len(data),
                content_type=self.content_type,
                headers=self.headers,
            )
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer.clear()
        await self._queue.put(None)
        parts = await self._uploader
        assert self.upload_id is not None
        info = await self.storage.complete_multipart(self.bucket, self.key, self.upload_id, parts)
        self.upload_id = None
        return info

    async def abort(self) -> None:
        """Drop everything written; safe to call at any point, and more than once."""
        self._buffer.clear()
        if self._uploader is not None:
            self._uploader.cancel()
            with contextlib.suppress(BaseException):
                await self._uploader
            self._uploader = None
        if self.upload_id is not None:
            upload_id, self.upload_id = self.upload_id, None
            with contextlib.suppress(Exception):
                await self.storage.abort_multipart(self.bucket, self.key, upload_id)
        elif self._closed:
            with contextlib.suppress(Exception):
                await self.storage.delete(self.bucket, self.key)


async def read_object(
    storage: Storage, bucket: str, key: str, *, chunk_size: int
) -> AsyncIterator[bytes]:
    """An object's bytes in chunks of about `chunk_size` (small reads gathered)."""
    stream = await storage.get(bucket, key)
    buffer = bytearray()
    try:
        async for piece in stream.body:
            buffer += piece
            if len(buffer) >= chunk_size:
                yield bytes(buffer)
                buffer.clear()
        if buffer:
            yield bytes(buffer)
    finally:
        await stream.aclose()


class Spool:
    """Bytes to be read back later: in memory up to `limit`, beyond that in a storage object.

    Archives need a few things only known at the end (a zip's central directory, a bag's
    manifest, the personal-data document's size before its tar header); spooling them keeps
    memory flat without a temp file.
    """

    def __init__(self, storage: Storage, bucket: str, key: str, *, limit: int) -> None:
        self.storage, self.bucket, self.key, self.limit = storage, bucket, key, limit
        self.size = 0
        self._buffer = bytearray()
        self._sink: StorageSink | None = None
        self._stored = False

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._sink is not None:
            await self._sink.write(data)
            return
        self._buffer += data
        if len(self._buffer) > self.limit:
            self._sink = StorageSink(self.storage, self.bucket, self.key, chunk_size=self.limit)
            await self._sink.write(bytes(self._buffer))
            self._buffer.clear()

    async def replay(self, *, chunk_size: int) -> AsyncIterator[bytes]:
        """Everything written, in order (the spool is closed for writing)."""
        if self._sink is None:
            for start in range(0, len(self._buffer), chunk_size):
                yield bytes(self._buffer[start : start + chunk_size])
            return
        if not self._stored:
            await self._sink.close()
            self._stored = True
        async for chunk in read_object(self.storage, self.bucket, self.key, chunk_size=chunk_size):
            yield chunk

    async def discard(self) -> None:
        self._buffer.clear()
        if self._sink is not None:
            await self._sink.abort()
            if self._stored:
                with contextlib.suppress(Exception):
                    await self.storage.delete(self.bucket, self.key)
            self._sink = None
