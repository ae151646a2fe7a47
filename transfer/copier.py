"""Copying one object: skip check, single PUT, multipart (streamed or server-side), verify.

The pipeline reads like the protocol: HEAD the target (skip if identical) → read the
source, hashing every byte (a single PUT may take its MD5 from the source's ETag, see
SourceReader.read) → send it with Content-MD5 (and x-amz-checksum-*) → check the
acknowledgement → record → check the object against what was read. Objects above the
multipart threshold go through MultipartCopier (transfer/multipart.py).
"""

from __future__ import annotations

from dataclasses import replace

from transfer import states
from transfer.checksums import Digest, Hasher, is_plain_md5
from transfer.context import CopyJob
from transfer.exceptions import (
    AccessDenied,
    ChecksumRefused,
    Corrupted,
    ItemFailed,
    TargetRefused,
)
from transfer.findings import TargetFindings
from transfer.multipart import MultipartCopier
from transfer.reads import SourceReader, hash_md5
from transfer.retry import target_call
from transfer.store import Item
from transfer.verify import Ack, Verifier


class ObjectCopier:
    """Copies items of one job in one worker; `copy(item)` raises what the caller must act on.

    `job` is fixed for the run; `findings` is what the copies learn about the ends as they
    go, shared by all of them (and read by the job's runner for its report).
    """

    def __init__(self, job: CopyJob, findings: TargetFindings) -> None:
        self.job = job
        self.findings = findings
        self._reader = SourceReader(job, findings)
        self._verifier = Verifier(job, findings, self._reader)
        self._multipart = MultipartCopier(job, findings, self._reader, self._verifier)

    async def copy(self, item: Item) -> None:
        if (
            item.upload_id is None
            and self.findings.check_target
            and await self._settled_by_target(item)
        ):
            return
        if self.findings.server_side and self.job.observer is None:
            try:
                await self._copy_server_side(item)
                self.findings.prove_server_side()
                return
            except (AccessDenied, TargetRefused) as exc:
                if self.findings.server_side_proven:
                    raise
                self.findings.refuse_server_side(exc)
                item = await self._drop_upload(item)
        try:
            await self._copy_streamed(item)
        except ChecksumRefused as exc:
            if self.job.target.checksum != "auto":
                raise TargetRefused(
                    f"{exc} (the destination's checksum setting is "
                    f"{self.job.target.checksum!r}; 'md5' or 'auto' would work)"
                ) from exc
            if self.findings.refuse_checksum():
                await self.job.on_checksum_fallback()
            item = await self._drop_upload(item)
            await self._copy_streamed(item)

    # what the target holds already

    async def _settled_by_target(self, item: Item) -> bool:
        """Whether the target key's object settles the item: the same object is skipped
        (unless on_conflict is "overwrite"); a different one is refused under "fail". A
        different object about to be replaced is recorded as a conflict first, so the report
        lists it even when this copy is resumed later."""
        ack = await self._verifier.head_target(item)
        if ack is None:
            return False
        rule = self.job.target.on_conflict
        same_by = await self._same_object(item, ack)
        if same_by is not None and rule != "overwrite":
            await self._record(item, states.SKIPPED, same_by, ack.etag)
            return True
        if same_by is None:
            # Under "fail" even an object an earlier try of this item wrote is refused: a
            # spurious conflict can be retried, a user's object overwritten cannot be undone.
            kept = rule == "fail"
            if item.conflict is None:
                await self.job.store.record_conflict(item, "kept" if kept else "replaced")
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
        if await self.job.store.ledger_match(item, ack.etag):
            return "skip:ledger"
        return None

    async def _record(self, item: Item, state: str, verified: str, target_etag: str) -> None:
        """A finished item without an upload joins the batch; others are recorded now."""
        if self.job.finished is not None and item.upload_id is None:
            self.job.finished.add(item, state=state, verified=verified, target_etag=target_etag)
        elif state == states.SKIPPED:
            await self.job.store.record_skip(item, verified=verified, target_etag=target_etag)
        else:
            await self.job.store.record_done(item, verified=verified, target_etag=target_etag)

    # streamed copies

    async def _copy_streamed(self, item: Item) -> None:
        if item.upload_id is None and not self.job.config.multipart(item.size):
            await self._single_put(item)
        else:
            await self._multipart.copy(item, server=False)

    async def _single_put(self, item: Item) -> None:
        algorithm = self.findings.algorithm
        reserved = max(item.size, 1)
        await self.job.budget.acquire(reserved)
        try:
            ack, digest = await self._read_and_put(item, algorithm)
        finally:
            await self.job.budget.release(reserved)
        method = self._verifier.method(
            etag_ok=is_plain_md5(ack.etag),
            checksum_ok=bool(algorithm and ack.checksums.get(algorithm)),
            algorithm=algorithm,
        )
        if method == "size":
            await self._verifier.check_size(item)
        if self.job.config.verify == "full":
            await self._verifier.reread(item, [(0, item.size, digest.md5_hex or "")])
            method += "+full"
        await self._record(item, states.DONE, method, ack.etag)

    async def _read_and_put(self, item: Item, algorithm: str | None) -> tuple[Ack, Digest]:
        # The buffer lives only in this frame: it is freed (or kept for reuse by the budget)
        # before the budget is given back.
        buffer, digest, info = await self.job.retry.call(
            f"read {item.key!r}",
            lambda: self._reader.read(item, 0, item.size, algorithm, whole_object=True),
        )
        checksum = (algorithm, digest.checksum_b64 or "") if algorithm else None
        what = f"PUT {item.target_key!r}"
        target = self.job.target
        if self.job.observer is not None:
            await self.job.observer.finished(item.key, item.size)

        async def send() -> Ack:
            nonlocal digest
            try:
                written = await target_call(
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
                self._verifier.check_ack(ack, digest, algorithm, what)
            except Corrupted:
                if digest.md5_from_source:
                    digest = await self._hashed(item, buffer, digest)  # retried with it
                raise
            return ack

        ack = await self.job.retry.call(what, send)
        self.job.budget.recycle(buffer)  # sent and acknowledged: the next part may reuse it
        return ack, digest

    async def _hashed(self, item: Item, buffer: bytearray, taken: Digest) -> Digest:
        """`taken` with the MD5 of the bytes read in place of the source's ETag."""
        hasher = Hasher(None)
        await hash_md5(hasher, buffer)
        digest = replace(taken, md5=hasher.result().md5, md5_from_source=False)
        if digest.md5 != taken.md5:
            self.findings.distrust_source_md5(item.key, taken.md5_hex, digest.md5_hex)
        return digest

    async def _copy_server_side(self, item: Item) -> None:
        if item.upload_id is None and not self.job.config.multipart(item.size):
            target = self.job.target

            async def copy_object() -> Ack:
                copied = await target_call(
                    target.storage.copy_object(
                        target.bucket,
                        item.target_key,
                        source_bucket=self.job.source.bucket,
                        source_key=item.key,
                        if_match=item.etag.strip('"'),
                    )
                )
                return Ack.of_object(copied)

            ack = await self.job.retry.call(f"CopyObject {item.target_key!r}", copy_object)
            method = await self._verifier.server_copy(item, ack)
            await self._record(item, states.DONE, method, ack.etag)
            return
        await self._multipart.copy(item, server=True)

    async def _drop_upload(self, item: Item) -> Item:
        if item.upload_id is not None:
            await self.abort(item.target_key, item.upload_id)
            item = await self.job.store.reset_upload(item)
        return item

    async def abort(self, target_key: str, upload_id: str) -> None:
        """Abort an upload; one already gone is fine."""
        await self._multipart.abort(target_key, upload_id)
