"""Copying one object: skip check, single PUT, multipart (streamed or server-side), verify.

The pipeline reads like the protocol: HEAD the target (skip if identical) → read a part from
the source, hashing every byte → send it with Content-MD5 (and x-amz-checksum-*) → check
the acknowledgement → record the part → complete → check the object against what was read.
An upload id is stored the moment it exists, so a crash or a cancel can always abort or
resume it; a resumed upload is reconciled with ListParts and only missing parts are sent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from storage.base import ObjectInfo, ObjectStream, Storage
from transfer.checksums import (
    Digest,
    Hasher,
    composite_checksum,
    is_md5_etag,
    is_plain_md5,
    multipart_etag,
    same_checksum,
)
from transfer.config import TransferConfig
from transfer.exceptions import (
    AccessDenied,
    Cancelled,
    ChecksumRefused,
    Corrupted,
    ItemFailed,
    LeaseLost,
    SourceChanged,
    TargetRefused,
    TransferError,
    Transient,
    UploadGone,
    VerificationFailed,
)
from transfer.retry import RetryPolicy, translate
from transfer.spec import Destination, Source
from transfer.store import Item, JobStore, StoredPart
from transfer.target import Ack, TargetClient, TargetPart
from transfer.throttle import MemoryBudget, TokenBucket

log = logging.getLogger(__name__)

_META_PREFIX = "x-amz-meta-"


@dataclass
class CopyContext:
    """Everything one job's copies share in one worker."""

    source: Source
    destination: Destination
    target: TargetClient
    target_storage: Storage  # reads, ListParts, aborts on the destination
    store: JobStore
    config: TransferConfig
    budget: MemoryBudget
    throttle: TokenBucket | None
    retry: RetryPolicy
    algorithm: str | None  # flexible checksum in use; None: Content-MD5 alone
    server_side: bool  # source and destination are the same endpoint
    on_checksum_fallback: Callable[[], Awaitable[None]]
    # Whether an object may be on the target already (False: the target was empty at
    # planning, so the per-object HEAD is skipped).
    check_target: bool = True


def object_headers(info: ObjectInfo) -> dict[str, str]:
    """The headers that recreate a source object's metadata on the target."""
    headers = {"Content-Type": info.content_type}
    headers.update(info.headers)
    for name, value in info.metadata.items():
        headers[_META_PREFIX + name] = value
    return headers


def attributes(info: ObjectInfo) -> dict[str, Any]:
    return {"metadata": dict(info.metadata), "headers": dict(info.headers)}


class ObjectCopier:
    """Copies items of one job; `copy(item)` raises what the caller must act on."""

    def __init__(self, context: CopyContext) -> None:
        self.c = context
        self._server_side_proven = False

    async def copy(self, item: Item) -> None:
        if item.upload_id is None and self.c.check_target and await self._already_there(item):
            return
        if self.c.server_side:
            try:
                await self._copy_server_side(item)
                self._server_side_proven = True
                return
            except (AccessDenied, TargetRefused) as exc:
                if self._server_side_proven:
                    raise
                # The destination's keys may not read Ferry's bucket, or the server may not
                # copy: stream through this process instead, for the rest of the job.
                log.info("server-side copy unavailable (%s); streaming instead", exc)
                self.c.server_side = False
                item = await self._drop_upload(item)
        try:
            await self._copy_streamed(item)
        except ChecksumRefused as exc:
            if self.c.destination.checksum != "auto":
                raise TargetRefused(
                    f"{exc} (the destination's checksum setting is "
                    f"{self.c.destination.checksum!r}; 'md5' or 'auto' would work)"
                ) from exc
            if self.c.algorithm is not None:
                log.info("target refused %s checksums; using Content-MD5 alone", self.c.algorithm)
                self.c.algorithm = None
                await self.c.on_checksum_fallback()
            item = await self._drop_upload(item)
            await self._copy_streamed(item)

    # skip

    async def _already_there(self, item: Item) -> bool:
        head = await self.c.retry.call(
            f"HEAD target {item.target_key!r}", lambda: self.c.target.head(item.target_key)
        )
        if head is None:
            return False
        ack, _ = head
        if ack.size != item.size:
            return False
        if ack.etag and ack.etag.lower() == item.etag.strip('"').lower():
            await self.c.store.record_skip(item, verified="skip:etag", target_etag=ack.etag)
            return True
        if await self.c.store.ledger_match(item, ack.etag):
            await self.c.store.record_skip(item, verified="skip:ledger", target_etag=ack.etag)
            return True
        return False

    # streamed copies

    async def _copy_streamed(self, item: Item) -> None:
        if item.upload_id is None and not self.c.config.multipart(item.size):
            await self._single_put(item)
        else:
            await self._multipart(item, server=False)

    async def _single_put(self, item: Item) -> None:
        algorithm = self.c.algorithm
        reserved = max(item.size, 1)
        await self.c.budget.acquire(reserved)
        try:
            ack, digest = await self._read_and_put(item, algorithm)
        finally:
            await self.c.budget.release(reserved)
        method = self._method(
            etag_ok=is_plain_md5(ack.etag),
            checksum_ok=bool(algorithm and ack.checksums.get(algorithm)),
            algorithm=algorithm,
        )
        if method == "size":
            await self._check_size(item)
        if self.c.config.verify == "full":
            await self._reread(item, [(0, item.size, digest.md5_hex)])
            method += "+full"
        await self.c.store.record_done(item, verified=method, target_etag=ack.etag)

    async def _read_and_put(self, item: Item, algorithm: str | None) -> tuple[Ack, Digest]:
        # The buffer lives only in this frame: it is freed before the budget is given back.
        buffer, digest, info = await self.c.retry.call(
            f"read {item.key!r}", lambda: self._read(item, 0, item.size, algorithm)
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        headers = object_headers(info)
        what = f"PUT {item.target_key!r}"

        async def send() -> Ack:
            ack = await self.c.target.put_object(
                item.target_key,
                buffer,
                md5_b64=digest.md5_b64,
                headers=headers,
                checksum=checksum,
            )
            self._check_ack(ack, digest, algorithm, what)
            return ack

        return await self.c.retry.call(what, send), digest

    async def _copy_server_side(self, item: Item) -> None:
        if item.upload_id is None and not self.c.config.multipart(item.size):
            ack = await self.c.retry.call(
                f"CopyObject {item.target_key!r}",
                lambda: self.c.target.copy_object(
                    item.target_key,
                    source_bucket=self.c.source.bucket,
                    source_key=item.key,
                    if_match=item.etag.strip('"'),
                ),
            )
            method = await self._verify_server_copy(item, ack)
            await self.c.store.record_done(item, verified=method, target_etag=ack.etag)
            return
        await self._multipart(item, server=True)

    async def _multipart(self, item: Item, *, server: bool) -> None:
        while True:
            if item.upload_id is None:
                item = await self._create_upload(item, server=server)
                done: dict[int, StoredPart] = {}
            else:
                reconciled = await self._reconcile(item, server=server)
                if reconciled is None:
                    return  # it had been completed before a crash; recorded now
                item, found = reconciled
                if item.upload_id is None:
                    continue  # the target lost the upload: start a new one
                done = found
            break
        assert item.upload_id is not None and item.part_size is not None
        count = max(1, -(-item.size // item.part_size))
        missing = iter([n for n in range(1, count + 1) if n not in done])
        await self._run_parts(item, missing, server=server)
        parts = await self.c.store.parts(item.id)
        if [p.part_number for p in parts] != list(range(1, count + 1)) or sum(
            p.size for p in parts
        ) != item.size:
            raise Transient(f"parts of {item.key!r} are incomplete after upload; retrying")
        ack = await self._complete(item, parts)
        if server:
            method = await self._verify_server_copy(item, ack)
        else:
            method = await self._verify_multipart(item, parts, ack)
        await self.c.store.record_done(item, verified=method, target_etag=ack.etag)

    async def _create_upload(self, item: Item, *, server: bool) -> Item:
        info = await self.c.retry.call(f"HEAD source {item.key!r}", lambda: self._head_source(item))
        algorithm = None if server else self.c.algorithm
        part_size = self.c.config.choose_part_size(item.size)
        upload_id = await self.c.retry.call(
            f"CreateMultipartUpload {item.target_key!r}",
            lambda: self.c.target.create_multipart(
                item.target_key, headers=object_headers(info), algorithm=algorithm
            ),
        )
        return await self.c.store.record_upload(
            item,
            upload_id=upload_id,
            part_size=part_size,
            checksum=algorithm,
            content_type=info.content_type,
            attributes=attributes(info),
        )

    async def _reconcile(
        self, item: Item, *, server: bool
    ) -> tuple[Item, dict[int, StoredPart]] | None:
        """Which stored parts the target still has; None if the object was completed."""
        assert item.upload_id is not None
        upload_id = item.upload_id
        stored = await self.c.store.parts(item.id)
        try:
            listed = await self.c.retry.call(
                f"ListParts {item.target_key!r}",
                lambda: self._target_call(
                    self.c.target_storage.list_parts(
                        self.c.destination.bucket, item.target_key, upload_id
                    )
                ),
            )
        except UploadGone:
            if await self._completed_before(item, stored, server=server):
                return None
            return await self.c.store.reset_upload(item), {}
        etags = {p.part_number: p.etag.strip('"').lower() for p in listed}
        keep = {p.part_number: p for p in stored if etags.get(p.part_number) == p.etag.lower()}
        stale = [p.part_number for p in stored if p.part_number not in keep]
        if stale:
            await self.c.store.forget_parts(item, stale)
        log.info("resuming %r: %d of its parts are on the target already", item.key, len(keep))
        return item, keep

    async def _completed_before(
        self, item: Item, stored: list[StoredPart], *, server: bool
    ) -> bool:
        """A crash between CompleteMultipartUpload and recording it: the object is there."""
        if server or not stored or any(p.md5 is None for p in stored):
            return False
        head = await self.c.retry.call(
            f"HEAD target {item.target_key!r}", lambda: self.c.target.head(item.target_key)
        )
        if head is None or head[0].size != item.size:
            return False
        expected = multipart_etag(bytes.fromhex(p.md5 or "") for p in stored)
        if head[0].etag.lower() != expected:
            return False
        await self.c.store.record_done(item, verified="etag", target_etag=head[0].etag)
        return True

    async def _run_parts(self, item: Item, numbers: Iterator[int], *, server: bool) -> None:
        """Send the parts with at most part_concurrency in flight; the first failure wins."""

        async def lane() -> None:
            for number in numbers:
                if server:
                    await self._copy_part(item, number)
                else:
                    await self._send_part(item, number)

        lanes = [asyncio.create_task(lane()) for _ in range(self.c.config.part_concurrency)]
        try:
            await _first_failure(lanes)
        finally:
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    def _span(self, item: Item, number: int) -> tuple[int, int]:
        assert item.part_size is not None
        start = (number - 1) * item.part_size
        return start, min(item.part_size, item.size - start)

    async def _send_part(self, item: Item, number: int) -> None:
        start, length = self._span(item, number)
        await self.c.budget.acquire(length)
        try:
            ack, digest = await self._read_and_upload_part(item, number, start, length)
        finally:
            await self.c.budget.release(length)
        await self.c.store.record_part(
            item, StoredPart(number, length, digest.md5_hex, digest.checksum_b64, ack.etag)
        )

    async def _read_and_upload_part(
        self, item: Item, number: int, start: int, length: int
    ) -> tuple[Ack, Digest]:
        assert item.upload_id is not None
        upload_id = item.upload_id
        algorithm = item.checksum
        buffer, digest, _ = await self.c.retry.call(
            f"read {item.key!r} part {number}",
            lambda: self._read(item, start, length, algorithm),
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        what = f"UploadPart {item.target_key!r} part {number}"

        async def send() -> Ack:
            ack = await self.c.target.upload_part(
                item.target_key,
                upload_id,
                number,
                buffer,
                md5_b64=digest.md5_b64,
                checksum=checksum,
            )
            self._check_ack(ack, digest, algorithm, what)
            return ack

        return await self.c.retry.call(what, send), digest

    async def _copy_part(self, item: Item, number: int) -> None:
        assert item.upload_id is not None
        upload_id = item.upload_id
        start, length = self._span(item, number)
        ack = await self.c.retry.call(
            f"UploadPartCopy {item.target_key!r} part {number}",
            lambda: self.c.target.upload_part_copy(
                item.target_key,
                upload_id,
                number,
                source_bucket=self.c.source.bucket,
                source_key=item.key,
                start=start,
                end=start + length - 1,
                if_match=item.etag.strip('"'),
            ),
        )
        await self.c.store.record_part(item, StoredPart(number, length, None, None, ack.etag))

    async def _complete(self, item: Item, parts: list[StoredPart]) -> Ack:
        assert item.upload_id is not None
        upload_id = item.upload_id
        targets = [TargetPart(p.part_number, p.etag, p.checksum) for p in parts]
        try:
            return await self.c.retry.call(
                f"CompleteMultipartUpload {item.target_key!r}",
                lambda: self.c.target.complete(item.target_key, upload_id, targets, item.checksum),
            )
        except UploadGone:
            # A retried Complete whose first answer was lost on the way finds no upload: the
            # object may be complete. Verification below decides whether it is ours.
            head = await self.c.retry.call(
                f"HEAD target {item.target_key!r}", lambda: self.c.target.head(item.target_key)
            )
            if head is None:
                raise Transient(f"upload of {item.key!r} vanished before completion") from None
            return head[0]

    # verification

    def _check_ack(self, ack: Ack, digest: Digest, algorithm: str | None, what: str) -> None:
        """Refuse an acknowledgement that does not match the bytes sent (retried as Corrupted)."""
        trust_checksum = self.c.destination.checksum in ("crc32c", "sha256")
        answered = ack.checksums.get(algorithm) if algorithm else None
        if answered is not None and answered != digest.checksum_b64:
            raise Corrupted(
                f"{what}: the target answered {algorithm} {answered}, "
                f"the bytes sent have {digest.checksum_b64}"
            )
        if is_plain_md5(ack.etag) and ack.etag.lower() != digest.md5_hex:
            # With an explicit checksum setting the checksum is the proof and the ETag may be
            # opaque (encryption at rest); otherwise a hex ETag that is not our MD5 means
            # other bytes were stored.
            if not (trust_checksum and answered is not None):
                raise Corrupted(
                    f"{what}: the target answered ETag {ack.etag}, "
                    f"the bytes sent have MD5 {digest.md5_hex}"
                )

    def _method(self, *, etag_ok: bool, checksum_ok: bool, algorithm: str | None) -> str:
        if etag_ok and checksum_ok:
            return f"etag+{algorithm}"
        if etag_ok:
            return "etag"
        if checksum_ok:
            return f"checksum-{algorithm}"
        return "size"

    async def _verify_multipart(self, item: Item, parts: list[StoredPart], ack: Ack) -> str:
        expected = multipart_etag(bytes.fromhex(p.md5 or "") for p in parts)
        etag_ok = False
        trust_checksum = self.c.destination.checksum in ("crc32c", "sha256")
        if is_md5_etag(ack.etag):
            etag_ok = ack.etag.lower() == expected
            if not etag_ok and not trust_checksum:
                raise VerificationFailed(
                    f"the completed object has ETag {ack.etag}; the parts read give {expected}"
                )
        checksum_ok = False
        algorithm = item.checksum
        if algorithm and all(p.checksum for p in parts):
            answered = ack.checksums.get(algorithm)
            if answered:
                wanted = composite_checksum(
                    algorithm, (base64.b64decode(p.checksum or "") for p in parts)
                )
                checksum_ok = same_checksum(answered, wanted)
                if not checksum_ok:
                    raise VerificationFailed(
                        f"the completed object has {algorithm} {answered}; "
                        f"the parts read give {wanted}"
                    )
        if trust_checksum and not checksum_ok and not etag_ok and is_md5_etag(ack.etag):
            raise VerificationFailed(
                f"the completed object has ETag {ack.etag}; the parts read give {expected}"
            )
        method = self._method(etag_ok=etag_ok, checksum_ok=checksum_ok, algorithm=algorithm)
        if method == "size":
            await self._check_size(item)
        if self.c.config.verify == "full":
            spans = [
                ((p.part_number - 1) * (item.part_size or 0), p.size, p.md5 or "") for p in parts
            ]
            await self._reread(item, spans)
            method += "+full"
        return method

    async def _verify_server_copy(self, item: Item, ack: Ack) -> str:
        await self._check_size(item)
        source_md5 = item.etag.strip('"').lower()
        if is_plain_md5(source_md5) and ack.etag.lower() == source_md5:
            return "server-copy+etag"
        if self.c.config.verify_server_copies and is_plain_md5(source_md5):
            await self._reread(item, [(0, item.size, source_md5)])
            return "server-copy+md5"
        if self.c.config.verify == "full":
            source = await self._hash_object(self.c.source.storage, self.c.source.bucket, item.key)
            await self._reread(item, [(0, item.size, source)])
            return "server-copy+full"
        return "server-copy+size"

    async def _check_size(self, item: Item) -> None:
        head = await self.c.retry.call(
            f"HEAD target {item.target_key!r}", lambda: self.c.target.head(item.target_key)
        )
        if head is None or head[0].size != item.size:
            found = "nothing" if head is None else f"{head[0].size} bytes"
            raise VerificationFailed(f"the target holds {found}; {item.size} bytes were sent")

    async def _reread(self, item: Item, spans: list[tuple[int, int, str]]) -> None:
        """Read the target back (verify="full") and compare each span's MD5."""
        for start, length, md5 in spans:
            found = await self._hash_object(
                self.c.target_storage,
                self.c.destination.bucket,
                item.target_key,
                start=start,
                length=length,
            )
            if found != md5:
                raise VerificationFailed(
                    f"bytes {start}..{start + length - 1} read back from the target have MD5 "
                    f"{found}; the source's have {md5}"
                )

    async def _hash_object(
        self,
        storage: Storage,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        length: int | None = None,
    ) -> str:
        side = "target" if storage is self.c.target_storage else "source"

        async def read() -> str:
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
                    if self.c.throttle is not None:
                        await self.c.throttle.consume(len(chunk))
                    hasher.update(chunk)
            except Exception as exc:
                raise translate(exc, side) from exc
            finally:
                await stream.aclose()
            return hasher.result().md5_hex

        return await self.c.retry.call(f"read back {key!r}", read)

    # source reads

    async def _open(
        self, storage: Storage, bucket: str, key: str, side: str, start: int | None, end: int | None
    ) -> ObjectStream:
        try:
            return await storage.get(bucket, key, start=start, end=end)
        except Exception as exc:
            raise translate(exc, side) from exc

    async def _head_source(self, item: Item) -> ObjectInfo:
        try:
            info = await self.c.source.storage.head(self.c.source.bucket, item.key)
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

    async def _read(
        self, item: Item, start: int, length: int, algorithm: str | None
    ) -> tuple[bytearray, Digest, ObjectInfo]:
        """Bytes start..start+length of the source, hashed as they arrive."""
        ranged = length > 0
        stream = await self._open(
            self.c.source.storage,
            self.c.source.bucket,
            item.key,
            "source",
            start if ranged else None,
            start + length - 1 if ranged else None,
        )
        buffer = bytearray(length)
        hasher = Hasher(algorithm)
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
                    if self.c.throttle is not None:
                        await self.c.throttle.consume(len(chunk))
                    view[position:end] = chunk
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
        return buffer, hasher.result(), stream.info

    # cleanup

    async def _drop_upload(self, item: Item) -> Item:
        if item.upload_id is not None:
            await self.abort(item.target_key, item.upload_id)
            item = await self.c.store.reset_upload(item)
        return item

    async def abort(self, target_key: str, upload_id: str) -> None:
        """Abort an upload; one already gone is fine."""
        try:
            await self.c.retry.call(
                f"AbortMultipartUpload {target_key!r}",
                lambda: self._target_call(
                    self.c.target_storage.abort_multipart(
                        self.c.destination.bucket, target_key, upload_id
                    )
                ),
            )
        except UploadGone:
            pass

    async def _target_call(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except Exception as exc:
            raise translate(exc, "target") from exc


async def _first_failure(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for all tasks; on the first failure raise it (the most telling one)."""
    pending = set(tasks)
    while pending:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        errors = [t.exception() for t in done if not t.cancelled() and t.exception() is not None]
        if errors:
            for kind in (Cancelled, LeaseLost, ItemFailed):
                for error in errors:
                    if isinstance(error, kind):
                        raise error
            raise errors[0]  # type: ignore[misc]
