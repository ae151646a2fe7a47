"""Reading the source (and, to verify, the target): ranged GETs hashed as the bytes arrive."""

from __future__ import annotations

import asyncio

from storage.base import ObjectInfo, ObjectStream, Storage
from transfer.checksums import Digest, Hasher, is_plain_md5
from transfer.context import CopyJob
from transfer.exceptions import SourceChanged, TransferError, Transient
from transfer.findings import TargetFindings
from transfer.retry import translate
from transfer.store import Item

# Parts this large get their MD5 on a worker thread once read (hashlib releases the GIL), so
# the event loop keeps serving the other lanes' sockets meanwhile; the cheap CRC32C (which
# takes bytes only) is fed chunk by chunk as they arrive.
HASH_ON_THREAD = 4 * 1024 * 1024


async def hash_md5(hasher: Hasher, buffer: bytearray) -> None:
    if len(buffer) >= HASH_ON_THREAD:
        await asyncio.to_thread(hasher.update_md5, buffer)
    else:
        hasher.update_md5(buffer)


class SourceReader:
    """The copies' reads: every byte read is hashed (see HASH_ON_THREAD and `read`), paced
    by the job's bandwidth limit and shown to its observer."""

    def __init__(self, job: CopyJob, findings: TargetFindings) -> None:
        self._job = job
        self._findings = findings

    async def hash_object(
        self,
        storage: Storage,
        bucket: str,
        key: str,
        side: str,
        *,
        start: int = 0,
        length: int | None = None,
    ) -> str:
        """The MD5 of an object (or of `length` bytes from `start`), read from either end."""

        async def read_and_hash() -> str:
            ranged = length is not None and length > 0
            stream = await self._open(
                storage,
                bucket,
                key,
                side,
                start if ranged else None,
                start + (length or 0) - 1 if ranged else None,
            )
            hasher = Hasher(None)
            try:
                async for chunk in stream.body:
                    if self._job.throttle is not None:
                        await self._job.throttle.take(len(chunk))
                    hasher.update(chunk)
            except Exception as exc:
                raise translate(exc, side) from exc
            finally:
                await stream.aclose()
            return hasher.result().md5_hex or ""  # Hasher(None) always hashes MD5

        return await self._job.retry.call(f"read back {key!r}", read_and_hash)

    async def _open(
        self, storage: Storage, bucket: str, key: str, side: str, start: int | None, end: int | None
    ) -> ObjectStream:
        try:
            return await storage.get(bucket, key, start=start, end=end)
        except Exception as exc:
            raise translate(exc, side) from exc

    async def head_source(self, item: Item) -> ObjectInfo:
        """The source object's metadata; SourceChanged if it is not the listed version."""
        try:
            info = await self._job.source.storage.head(self._job.source.bucket, item.key)
        except Exception as exc:
            raise translate(exc, "source") from exc
        self._same_version(item, info)
        return info

    def _same_version(self, item: Item, info: ObjectInfo) -> None:
        if info.etag.strip('"').lower() != item.etag.strip('"').lower() or info.size != item.size:
            raise SourceChanged(
                f"{item.key!r} changed since it was listed (ETag {item.etag} → {info.etag}, "
                f"{item.size} → {info.size} bytes)"
            )

    async def read(
        self,
        item: Item,
        start: int,
        length: int,
        algorithm: str | None,
        *,
        whole_object: bool = False,
        md5: bool = True,
    ) -> tuple[bytearray, Digest, ObjectInfo]:
        """Bytes start..start+length of the source, hashed as they arrive (`md5=False`: with
        the flexible checksum alone, for a target that checks it; see PartSender.probe).

        A whole object read for one PUT skips the MD5 when the source's ETag is one and a
        flexible checksum is hashed instead (as rclone does): the ETag goes out as the
        Content-MD5, the target checks the bytes against it, and the checksum proves the
        target stored the bytes read. ObjectCopier hashes them after all if either fails.
        """
        ranged = length > 0
        stream = await self._open(
            self._job.source.storage,
            self._job.source.bucket,
            item.key,
            "source",
            start if ranged else None,
            start + length - 1 if ranged else None,
        )
        buffer = self._job.budget.buffer(length)
        info = stream.info
        take_source_md5 = (
            whole_object
            and algorithm is not None
            and self._findings.source_md5
            and info.etag_is_md5
            and is_plain_md5(info.etag)
        )
        hasher = Hasher(
            algorithm, source_md5=bytes.fromhex(info.etag) if take_source_md5 else None, md5=md5
        )
        on_thread = md5 and length >= HASH_ON_THREAD and not take_source_md5
        position = 0
        try:
            self._same_version(
                item,
                ObjectInfo(
                    key=item.key,
                    size=stream.info.size,
                    etag=stream.info.etag,
                    last_modified=stream.info.last_modified,
                ),
            )
            with memoryview(buffer) as view:
                async for chunk in stream.body:
                    end = position + len(chunk)
                    if end > length:
                        raise SourceChanged(f"{item.key!r} is longer than when it was listed")
                    if self._job.throttle is not None:
                        await self._job.throttle.take(len(chunk))
                    view[position:end] = chunk
                    if on_thread:
                        hasher.update_checksum(chunk)
                    else:
                        hasher.update(chunk)
                    position = end
        except TransferError:
            raise
        except Exception as exc:
            raise translate(exc, "source") from exc
        finally:
            await stream.aclose()
        if position != length:
            raise Transient(f"source: {item.key!r} ended after {position} of {length} bytes")
        if on_thread:
            await hash_md5(hasher, buffer)
        if self._job.observer is not None:
            with memoryview(buffer) as view:
                self._job.observer.read(item.key, start, view[:length])
        return buffer, hasher.result(), info
