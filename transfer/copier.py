"""Copying one object: skip check, single PUT, multipart (streamed or server-side), verify.

The pipeline reads like the protocol: HEAD the target (skip if identical) → read a part from
the source, hashing every byte (a single PUT may take its MD5 from the source's ETag, see
SourceReads._read) → send it with Content-MD5 (and x-amz-checksum-*) → check
the acknowledgement → record the part → complete → check the object against what was read.
An upload id is stored the moment it exists, so a crash or a cancel can always abort or
resume it; a resumed upload is reconciled with ListParts and only missing parts are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import Any

from storage.base import PartInfo
from transfer import states
from transfer.checksums import (
    Digest,
    Hasher,
    b64,
    is_plain_md5,
    multipart_etag,
    new_checksum,
    same_checksum,
)
from transfer.config import MAX_PARTS
from transfer.context import CopyContext, attributes
from transfer.exceptions import (
    AccessDenied,
    Cancelled,
    ChecksumRefused,
    Corrupted,
    ItemFailed,
    LeaseLost,
    ReadBack,
    TargetRefused,
    TransferError,
    Transient,
    UploadGone,
)
from transfer.reads import hash_md5
from transfer.retry import translate
from transfer.store import Item, StoredPart
from transfer.verify import Ack, Verification

log = logging.getLogger(__name__)

PROBE_PART = MAX_PARTS  # the part number of the checksum probe (see ObjectCopier._probe)


class ObjectCopier(Verification):
    """Copies items of one job; `copy(item)` raises what the caller must act on."""

    def __init__(self, context: CopyContext) -> None:
        self.c = context
        self._server_side_proven = False
        self._probing = asyncio.Lock()

    async def copy(self, item: Item) -> None:
        if item.upload_id is None and self.c.check_target and await self._settled_by_target(item):
            return
        if self.c.server_side and self.c.observer is None:
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
            if self.c.target.checksum != "auto":
                raise TargetRefused(
                    f"{exc} (the destination's checksum setting is "
                    f"{self.c.target.checksum!r}; 'md5' or 'auto' would work)"
                ) from exc
            if self.c.algorithm is not None:
                log.info("target refused %s checksums; using Content-MD5 alone", self.c.algorithm)
                self.c.algorithm = None
                await self.c.on_checksum_fallback()
            item = await self._drop_upload(item)
            await self._copy_streamed(item)

    # what the target holds already

    async def _settled_by_target(self, item: Item) -> bool:
        """Whether the target key's object settles the item: the same object is skipped
        (unless on_conflict is "overwrite"); a different one is refused under "fail". A
        different object about to be replaced is recorded as a conflict first, so the report
        lists it even when this copy is resumed later."""
        ack = await self._head_target(item)
        if ack is None:
            return False
        rule = self.c.target.on_conflict
        same_by = await self._same_object(item, ack)
        if same_by is not None and rule != "overwrite":
            await self._record(item, states.SKIPPED, same_by, ack.etag)
            return True
        if same_by is None:
            # Under "fail" even an object an earlier try of this item wrote is refused: a
            # spurious conflict can be retried, a user's object overwritten cannot be undone.
            kept = rule == "fail"
            if item.conflict is None:
                await self.c.store.record_conflict(item, "kept" if kept else "replaced")
            if kept:
                raise ItemFailed(
                    f"a different object is already at {item.target_key!r} (on_conflict: fail)"
                )
        return False

    async def _same_object(self, item: Item, ack: Ack) -> str | None:
        """How the target's object is known to be this source object; None if it is not."""
        if ack.size != item.size:
            return None
        if ack.etag and ack.etag.lower() == item.etag.strip('"').lower():
            return "skip:etag"
        if await self.c.store.ledger_match(item, ack.etag):
            return "skip:ledger"
        return None

    async def _record(self, item: Item, state: str, verified: str, target_etag: str) -> None:
        """A finished item without an upload joins the batch; others are recorded now."""
        if self.c.finished is not None and item.upload_id is None:
            self.c.finished.add(item, state=state, verified=verified, target_etag=target_etag)
        elif state == states.SKIPPED:
            await self.c.store.record_skip(item, verified=verified, target_etag=target_etag)
        else:
            await self.c.store.record_done(item, verified=verified, target_etag=target_etag)

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
            await self._reread(item, [(0, item.size, digest.md5_hex or "")])
            method += "+full"
        await self._record(item, states.DONE, method, ack.etag)

    async def _read_and_put(self, item: Item, algorithm: str | None) -> tuple[Ack, Digest]:
        # The buffer lives only in this frame: it is freed (or kept for reuse by the budget)
        # before the budget is given back.
        buffer, digest, info = await self.c.retry.call(
            f"read {item.key!r}",
            lambda: self._read(item, 0, item.size, algorithm, whole_object=True),
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        what = f"PUT {item.target_key!r}"
        target = self.c.target
        if self.c.observer is not None:
            await self.c.observer.finished(item.key, item.size)

        async def send() -> Ack:
            nonlocal digest
            try:
                written = await self._target_call(
                    target.storage.put(
                        target.bucket,
                        item.target_key,
                        buffer,
                        size=item.size,
                        content_type=info.content_type,
                        metadata=info.metadata,
                        headers=info.headers,
                        content_md5=digest.md5_b64,
                        checksum=checksum,
                    )
                )
                ack = Ack.of_object(written)
                if digest.md5_from_source and not ack.checksums.get(algorithm or ""):
                    # The target did not answer the checksum: only an MD5 of our own can
                    # prove what it stored.
                    digest = await self._hashed(item, buffer, digest)
                self._check_ack(ack, digest, algorithm, what)
            except Corrupted:
                if digest.md5_from_source:
                    digest = await self._hashed(item, buffer, digest)  # retried with it
                raise
            return ack

        ack = await self.c.retry.call(what, send)
        self.c.budget.recycle(buffer)  # sent and acknowledged: the next part may reuse it
        return ack, digest

    async def _hashed(self, item: Item, buffer: bytearray, taken: Digest) -> Digest:
        """`taken` with the MD5 of the bytes read in place of the source's ETag."""
        hasher = Hasher(None)
        await hash_md5(hasher, buffer)
        digest = replace(taken, md5=hasher.result().md5, md5_from_source=False)
        if digest.md5 != taken.md5 and self.c.source_md5:
            log.warning(
                "%r: the source's ETag %s is not the MD5 of its bytes (%s); hashing every "
                "object of this job here",
                item.key,
                taken.md5_hex,
                digest.md5_hex,
            )
            self.c.source_md5 = False
        return digest

    async def _copy_server_side(self, item: Item) -> None:
        if item.upload_id is None and not self.c.config.multipart(item.size):
            target = self.c.target

            async def copy_object() -> Ack:
                copied = await self._target_call(
                    target.storage.copy_object(
                        target.bucket,
                        item.target_key,
                        source_bucket=self.c.source.bucket,
                        source_key=item.key,
                        if_match=item.etag.strip('"'),
                    )
                )
                return Ack.of_object(copied)

            ack = await self.c.retry.call(f"CopyObject {item.target_key!r}", copy_object)
            method = await self._verify_server_copy(item, ack)
            await self._record(item, states.DONE, method, ack.etag)
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
        if not server:
            await self._probe(item, count)
        missing = iter([n for n in range(1, count + 1) if n not in done])
        await self._run_parts(item, missing, server=server)
        parts = await self.c.store.parts(item.id)
        if [p.part_number for p in parts] != list(range(1, count + 1)) or sum(
            p.size for p in parts
        ) != item.size:
            raise Transient(f"parts of {item.key!r} are incomplete after upload; retrying")
        read_back = False
        if self.c.observer is not None and not server:
            try:
                await self.c.observer.finished(item.key, item.size)
            except ReadBack:
                read_back = True  # resumed: the earlier parts' bytes were read before a crash
        ack = await self._complete(item, parts)
        if server:
            method = await self._verify_server_copy(item, ack)
        else:
            method = await self._verify_multipart(item, parts, ack)
        if read_back:
            await self._observe_written(item)
        await self.c.store.record_done(item, verified=method, target_etag=ack.etag)

    async def _observe_written(self, item: Item) -> None:
        """Show the observer the object as the target stored it; delete it if refused."""
        assert self.c.observer is not None
        target = self.c.target

        async def read_back() -> None:
            assert self.c.observer is not None
            stream = await target.storage.get(target.bucket, item.target_key)
            offset = 0
            try:
                async for chunk in stream.body:
                    self.c.observer.read(item.key, offset, memoryview(chunk))
                    offset += len(chunk)
            finally:
                await stream.aclose()

        await self.c.retry.call(
            f"read back {item.target_key!r}", lambda: self._target_call(read_back())
        )
        try:
            await self.c.observer.finished(item.key, item.size)
        except TransferError:
            await self.c.retry.call(
                f"DELETE {item.target_key!r}",
                lambda: self._target_call(target.storage.delete(target.bucket, item.target_key)),
            )
            raise

    async def _create_upload(self, item: Item, *, server: bool) -> Item:
        info = await self.c.retry.call(f"HEAD source {item.key!r}", lambda: self._head_source(item))
        algorithm = None if server else self.c.algorithm
        part_size = self.c.config.choose_part_size(item.size)

        target = self.c.target

        async def create_and_record() -> Item:
            upload_id = await self.c.retry.call(
                f"CreateMultipartUpload {item.target_key!r}",
                lambda: self._target_call(
                    target.storage.create_multipart(
                        target.bucket,
                        item.target_key,
                        content_type=info.content_type,
                        metadata=info.metadata,
                        headers=info.headers,
                        checksum_algorithm=algorithm,
                    )
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

        # An upload the target has made must reach the database, or nothing could abort it:
        # a cancel or stop that arrives meanwhile waits for the id to be stored, then acts.
        creating = asyncio.ensure_future(create_and_record())
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await creating
            raise

    async def _probe(self, item: Item, count: int) -> None:
        """Ask the target, once per run of a job, whether it checks a part's flexible checksum.

        The question is part 10,000 of an upload with fewer parts: one byte, sent with the
        checksum of another. A target that refuses it (SeaweedFS and S3 do) checks every
        part's checksum, so the parts are hashed with that checksum alone: their MD5 would
        prove nothing more and costs more CPU than the rest of the copy (0.8 s of 1.8 s for
        512 MiB). A target that takes it (moto does) gets Content-MD5 with every part and
        its ETags compared, as before. Either way the probe part is not listed when the
        upload is completed, so it never becomes part of the object.
        """
        algorithm = item.checksum
        if (
            self.c.checksum_checked is not None
            or algorithm is None
            or self.c.config.verify != "etag"
            or count >= PROBE_PART
        ):
            return
        assert item.upload_id is not None
        async with self._probing:
            if self.c.checksum_checked is not None:
                return
            other = new_checksum(algorithm)
            other.update(b"\x01")
            target = self.c.target
            try:
                await self._target_call(
                    target.storage.upload_part(
                        target.bucket,
                        item.target_key,
                        item.upload_id,
                        PROBE_PART,
                        b"\x00",
                        size=1,
                        checksum=(algorithm, b64(other.digest())),
                    )
                )
            except Corrupted:
                self.c.checksum_checked = True
            except TransferError as exc:
                log.info("the checksum probe got %s; parts carry Content-MD5", exc)
                self.c.checksum_checked = False
            else:
                self.c.checksum_checked = False
            log.info(
                "the target %s a part's %s: parts are hashed with %s",
                "checks" if self.c.checksum_checked else "does not check",
                algorithm,
                algorithm if self.c.checksum_checked else f"MD5 and {algorithm}",
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
                    self.c.target.storage.list_parts(
                        self.c.target.bucket, item.target_key, upload_id
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
        algorithm = item.checksum
        hashed = all(p.md5 for p in stored)
        summed = algorithm is not None and all(p.checksum for p in stored)
        if server or not stored or not (hashed or summed):
            return False
        head = await self._head_target(item)
        if head is None or head.size != item.size:
            return False
        if hashed:
            if head.etag.lower() != multipart_etag(bytes.fromhex(p.md5 or "") for p in stored):
                return False
            verified = "etag"
        else:
            assert algorithm is not None
            wanted = self._parts_checksum(algorithm, stored)
            if not same_checksum(head.checksums.get(algorithm), wanted):
                return False
            verified = f"checksum-{algorithm}"
        await self.c.store.record_done(item, verified=verified, target_etag=head.etag)
        return True

    async def _run_parts(self, item: Item, numbers: Iterator[int], *, server: bool) -> None:
        """Send the parts with at most part_concurrency in flight; the first failure wins.

        Streamed parts have read_ahead_parts more lanes: they read the next parts (as memory
        allows) while the uploads are under way, so an upload that ends is followed at once
        by the next one instead of by a wait for its read.
        """
        config = self.c.config
        sending = asyncio.Semaphore(config.part_concurrency)

        async def lane() -> None:
            for number in numbers:
                if server:
                    await self._copy_part(item, number)
                else:
                    await self._send_part(item, number, sending)

        count = config.part_concurrency + (0 if server else config.read_ahead_parts)
        lanes = [asyncio.create_task(lane()) for _ in range(count)]
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

    async def _send_part(self, item: Item, number: int, sending: asyncio.Semaphore) -> None:
        start, length = self._span(item, number)
        await self.c.budget.acquire(length)
        try:
            ack, digest = await self._read_and_upload_part(item, number, start, length, sending)
        finally:
            await self.c.budget.release(length)
        await self.c.store.record_part(
            item, StoredPart(number, length, digest.md5_hex, digest.checksum_b64, ack.etag)
        )

    async def _read_and_upload_part(
        self, item: Item, number: int, start: int, length: int, sending: asyncio.Semaphore
    ) -> tuple[Ack, Digest]:
        assert item.upload_id is not None
        upload_id = item.upload_id
        algorithm = item.checksum
        md5 = algorithm is None or not self.c.checksum_checked
        buffer, digest, _ = await self.c.retry.call(
            f"read {item.key!r} part {number}",
            lambda: self._read(item, start, length, algorithm, md5=md5),
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        what = f"UploadPart {item.target_key!r} part {number}"

        target = self.c.target

        async def send() -> Ack:
            part = await self._target_call(
                target.storage.upload_part(
                    target.bucket,
                    item.target_key,
                    upload_id,
                    number,
                    buffer,
                    size=length,
                    content_md5=digest.md5_b64,
                    checksum=checksum,
                )
            )
            ack = Ack.of_part(part, algorithm)
            self._check_ack(ack, digest, algorithm, what)
            return ack

        async with sending:
            ack = await self.c.retry.call(what, send)
        self.c.budget.recycle(buffer)  # sent and acknowledged: the next part may reuse it
        return ack, digest

    async def _copy_part(self, item: Item, number: int) -> None:
        assert item.upload_id is not None
        upload_id = item.upload_id
        start, length = self._span(item, number)
        target = self.c.target
        ack = await self.c.retry.call(
            f"UploadPartCopy {item.target_key!r} part {number}",
            lambda: self._target_call(
                target.storage.upload_part_copy(
                    target.bucket,
                    item.target_key,
                    upload_id,
                    number,
                    source_bucket=self.c.source.bucket,
                    source_key=item.key,
                    start=start,
                    end=start + length - 1,
                    if_match=item.etag.strip('"'),
                )
            ),
        )
        await self.c.store.record_part(item, StoredPart(number, length, None, None, ack.etag))

    async def _complete(self, item: Item, parts: list[StoredPart]) -> Ack:
        assert item.upload_id is not None
        upload_id = item.upload_id
        listed = [PartInfo(p.part_number, p.size, p.etag, p.checksum) for p in parts]
        target = self.c.target

        async def complete() -> Ack:
            completed = await self._target_call(
                target.storage.complete_multipart(
                    target.bucket,
                    item.target_key,
                    upload_id,
                    listed,
                    checksum_algorithm=item.checksum,
                )
            )
            return Ack.of_object(completed)

        try:
            return await self.c.retry.call(f"CompleteMultipartUpload {item.target_key!r}", complete)
        except UploadGone:
            # A retried Complete whose first answer was lost on the way finds no upload: the
            # object may be complete. Verification below decides whether it is ours.
            head = await self._head_target(item)
            if head is None:
                raise Transient(f"upload of {item.key!r} vanished before completion") from None
            return head

    # verification

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
                    self.c.target.storage.abort_multipart(
                        self.c.target.bucket, target_key, upload_id
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
