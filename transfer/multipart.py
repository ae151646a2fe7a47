"""Multipart copies: create → parts → complete, streamed or server-side, resumable.

An upload id is stored the moment it exists, so a crash or a cancel can always abort or
resume it; a resumed upload is reconciled with ListParts and only missing parts are sent.
Each part is pinned to the listed version of the source (a streamed read checks its ETag, an
UploadPartCopy sends x-amz-copy-source-if-match), hashed as it is read, and its
acknowledgement checked before it is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from storage.base import PartInfo
from transfer.checksums import Digest, b64, multipart_etag, new_checksum, same_checksum
from transfer.config import MAX_PARTS
from transfer.context import CopyJob, attributes
from transfer.exceptions import (
    Corrupted,
    ReadBack,
    TransferError,
    Transient,
    UploadGone,
)
from transfer.findings import TargetFindings
from transfer.lanes import run_lanes
from transfer.reads import SourceReader
from transfer.retry import target_call
from transfer.store import Item, StoredPart
from transfer.verify import Ack, Verifier

log = logging.getLogger(__name__)

PROBE_PART = MAX_PARTS  # the part number of the checksum probe (see MultipartCopier._probe)


class MultipartCopier:
    """Copies items of one job by multipart upload; shared by all of the job's copies."""

    def __init__(
        self, job: CopyJob, findings: TargetFindings, reader: SourceReader, verifier: Verifier
    ) -> None:
        self._job = job
        self._findings = findings
        self._reader = reader
        self._verifier = verifier
        self._probing = asyncio.Lock()

    async def copy(self, item: Item, *, server: bool) -> None:
        """Create (or resume) the item's upload, send the missing parts, complete, verify."""
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
        parts = await self._job.store.parts(item.id)
        if [p.part_number for p in parts] != list(range(1, count + 1)) or sum(
            p.size for p in parts
        ) != item.size:
            raise Transient(f"parts of {item.key!r} are incomplete after upload; retrying")
        read_back = False
        if self._job.observer is not None and not server:
            try:
                await self._job.observer.finished(item.key, item.size)
            except ReadBack:
                read_back = True  # resumed: the earlier parts' bytes were read before a crash
        ack = await self._complete(item, parts)
        if server:
            method = await self._verifier.server_copy(item, ack)
        else:
            method = await self._verifier.multipart(item, parts, ack)
        if read_back:
            await self._observe_written(item)
        await self._job.store.record_done(item, verified=method, target_etag=ack.etag)

    async def _observe_written(self, item: Item) -> None:
        """Show the observer the object as the target stored it; delete it if refused."""
        assert self._job.observer is not None
        target = self._job.target

        async def read_back() -> None:
            assert self._job.observer is not None
            stream = await target.storage.get(target.bucket, item.target_key)
            offset = 0
            try:
                async for chunk in stream.body:
                    self._job.observer.read(item.key, offset, memoryview(chunk))
                    offset += len(chunk)
            finally:
                await stream.aclose()

        await self._job.retry.call(
            f"read back {item.target_key!r}", lambda: target_call(read_back())
        )
        try:
            await self._job.observer.finished(item.key, item.size)
        except TransferError:
            await self._job.retry.call(
                f"DELETE {item.target_key!r}",
                lambda: target_call(target.storage.delete(target.bucket, item.target_key)),
            )
            raise

    async def _create_upload(self, item: Item, *, server: bool) -> Item:
        info = await self._job.retry.call(
            f"HEAD source {item.key!r}", lambda: self._reader.head_source(item)
        )
        algorithm = None if server else self._findings.algorithm
        part_size = self._job.config.choose_part_size(item.size)

        target = self._job.target

        async def create_and_record() -> Item:
            upload_id = await self._job.retry.call(
                f"CreateMultipartUpload {item.target_key!r}",
                lambda: target_call(
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
            return await self._job.store.record_upload(
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
        prove nothing more and costs more CPU than the rest of the copy. A target that
        takes it (moto does) gets Content-MD5 with every part and its ETags compared.
        Either way the probe part is not listed when the upload is completed, so it never
        becomes part of the object.
        """
        algorithm = item.checksum
        if (
            self._findings.checksum_checked is not None
            or algorithm is None
            or self._job.config.verify != "etag"
            or count >= PROBE_PART
        ):
            return
        assert item.upload_id is not None
        async with self._probing:
            if self._findings.checksum_checked is not None:
                return
            other = new_checksum(algorithm)
            other.update(b"\x01")
            target = self._job.target
            try:
                await target_call(
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
                checked = True
            except TransferError as exc:
                log.info("the checksum probe got %s; parts carry Content-MD5", exc)
                checked = False
            else:
                checked = False
            self._findings.probed(algorithm, checked=checked)

    async def _reconcile(
        self, item: Item, *, server: bool
    ) -> tuple[Item, dict[int, StoredPart]] | None:
        """Which stored parts the target still has; None if the object was completed."""
        assert item.upload_id is not None
        upload_id = item.upload_id
        stored = await self._job.store.parts(item.id)
        try:
            listed = await self._job.retry.call(
                f"ListParts {item.target_key!r}",
                lambda: target_call(
                    self._job.target.storage.list_parts(
                        self._job.target.bucket, item.target_key, upload_id
                    )
                ),
            )
        except UploadGone:
            if await self._completed_before(item, stored, server=server):
                return None
            return await self._job.store.reset_upload(item), {}
        etags = {p.part_number: p.etag.strip('"').lower() for p in listed}
        keep = {p.part_number: p for p in stored if etags.get(p.part_number) == p.etag.lower()}
        stale = [p.part_number for p in stored if p.part_number not in keep]
        if stale:
            await self._job.store.forget_parts(item, stale)
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
        head = await self._verifier.head_target(item)
        if head is None or head.size != item.size:
            return False
        if hashed:
            if head.etag.lower() != multipart_etag(bytes.fromhex(p.md5 or "") for p in stored):
                return False
            verified = "etag"
        else:
            assert algorithm is not None
            wanted = self._verifier.parts_checksum(algorithm, stored)
            if not same_checksum(head.checksums.get(algorithm), wanted):
                return False
            verified = f"checksum-{algorithm}"
        await self._job.store.record_done(item, verified=verified, target_etag=head.etag)
        return True

    async def _run_parts(self, item: Item, numbers: Iterator[int], *, server: bool) -> None:
        """Send the parts with at most part_concurrency in flight; the first failure cancels
        the other lanes and is raised (the most telling one, if several failed together).

        Streamed parts have read_ahead_parts more lanes: they read the next parts (as memory
        allows) while the uploads are under way, so an upload that ends is followed at once
        by the next one instead of by a wait for its read.
        """
        config = self._job.config
        sending = asyncio.Semaphore(config.part_concurrency)

        async def lane() -> None:
            for number in numbers:
                if server:
                    await self._copy_part(item, number)
                else:
                    await self._send_part(item, number, sending)

        count = config.part_concurrency + (0 if server else config.read_ahead_parts)
        await run_lanes([lane() for _ in range(count)])

    def _span(self, item: Item, number: int) -> tuple[int, int]:
        assert item.part_size is not None
        start = (number - 1) * item.part_size
        return start, min(item.part_size, item.size - start)

    async def _send_part(self, item: Item, number: int, sending: asyncio.Semaphore) -> None:
        start, length = self._span(item, number)
        await self._job.budget.acquire(length)
        try:
            ack, digest = await self._read_and_upload_part(item, number, start, length, sending)
        finally:
            await self._job.budget.release(length)
        await self._job.store.record_part(
            item, StoredPart(number, length, digest.md5_hex, digest.checksum_b64, ack.etag)
        )

    async def _read_and_upload_part(
        self, item: Item, number: int, start: int, length: int, sending: asyncio.Semaphore
    ) -> tuple[Ack, Digest]:
        assert item.upload_id is not None
        upload_id = item.upload_id
        algorithm = item.checksum
        md5 = algorithm is None or not self._findings.checksum_checked
        buffer, digest, _ = await self._job.retry.call(
            f"read {item.key!r} part {number}",
            lambda: self._reader.read(item, start, length, algorithm, md5=md5),
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        what = f"UploadPart {item.target_key!r} part {number}"

        target = self._job.target

        async def send() -> Ack:
            part = await target_call(
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
            self._verifier.check_ack(ack, digest, algorithm, what)
            return ack

        async with sending:
            ack = await self._job.retry.call(what, send)
        self._job.budget.recycle(buffer)  # sent and acknowledged: the next part may reuse it
        return ack, digest

    async def _copy_part(self, item: Item, number: int) -> None:
        assert item.upload_id is not None
        upload_id = item.upload_id
        start, length = self._span(item, number)
        target = self._job.target
        ack = await self._job.retry.call(
            f"UploadPartCopy {item.target_key!r} part {number}",
            lambda: target_call(
                target.storage.upload_part_copy(
                    target.bucket,
                    item.target_key,
                    upload_id,
                    number,
                    source_bucket=self._job.source.bucket,
                    source_key=item.key,
                    start=start,
                    end=start + length - 1,
                    if_match=item.etag.strip('"'),
                )
            ),
        )
        await self._job.store.record_part(item, StoredPart(number, length, None, None, ack.etag))

    async def _complete(self, item: Item, parts: list[StoredPart]) -> Ack:
        assert item.upload_id is not None
        upload_id = item.upload_id
        listed = [PartInfo(p.part_number, p.size, p.etag, p.checksum) for p in parts]
        target = self._job.target

        async def complete() -> Ack:
            completed = await target_call(
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
            return await self._job.retry.call(
                f"CompleteMultipartUpload {item.target_key!r}", complete
            )
        except UploadGone:
            # A retried Complete whose first answer was lost on the way finds no upload: the
            # object may be complete. Verification below decides whether it is ours.
            head = await self._verifier.head_target(item)
            if head is None:
                raise Transient(f"upload of {item.key!r} vanished before completion") from None
            return head

    async def abort(self, target_key: str, upload_id: str) -> None:
        """Abort an upload; one already gone is fine."""
        try:
            await self._job.retry.call(
                f"AbortMultipartUpload {target_key!r}",
                lambda: target_call(
                    self._job.target.storage.abort_multipart(
                        self._job.target.bucket, target_key, upload_id
                    )
                ),
            )
        except UploadGone:
            pass
