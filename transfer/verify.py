"""Verification: acknowledgements and completed objects checked against what was read.

Where the target's ETag is an MD5 (single part) or an MD5 of part MD5s, it is compared;
where the target answers flexible checksums, they are compared too; where neither exists,
only the size is, and the method recorded says so. `verify="full"` reads the target back.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field

from storage.base import ObjectInfo, PartInfo
from storage.exceptions import NoSuchKey
from transfer.checksums import (
    Digest,
    composite_checksum,
    is_md5_etag,
    is_plain_md5,
    multipart_etag,
    same_checksum,
)
from transfer.context import CopyJob
from transfer.exceptions import Corrupted, VerificationFailed
from transfer.findings import TargetFindings
from transfer.reads import SourceReader
from transfer.retry import translate
from transfer.store import Item, StoredPart


@dataclass(frozen=True)
class Ack:
    """What the target answered to a write: its ETag and any checksums it echoed."""

    etag: str
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> base64
    size: int | None = None

    @classmethod
    def of_object(cls, info: ObjectInfo) -> Ack:
        return cls(info.etag, info.checksums, info.size)

    @classmethod
    def of_part(cls, part: PartInfo, algorithm: str | None) -> Ack:
        answered = {algorithm: part.checksum} if algorithm and part.checksum else {}
        return cls(part.etag, answered, part.size)


class Verifier:
    """The checks the copies apply; see states.py for the names of the methods returned."""

    def __init__(self, job: CopyJob, findings: TargetFindings, reader: SourceReader) -> None:
        self._job = job
        self._findings = findings
        self._reader = reader

    def check_ack(self, ack: Ack, digest: Digest, algorithm: str | None, what: str) -> None:
        """Refuse an acknowledgement that does not match the bytes sent (retried as Corrupted)."""
        trust_checksum = self._job.target.checksum in ("crc32c", "sha256")
        answered = ack.checksums.get(algorithm) if algorithm else None
        if answered is not None and answered != digest.checksum_b64:
            raise Corrupted(
                f"{what}: the target answered {algorithm} {answered}, "
                f"the bytes sent have {digest.checksum_b64}"
            )
        # Not hashed with MD5 (the target proved it checks the checksum): nothing to compare.
        hashed = digest.md5 is not None
        if hashed and is_plain_md5(ack.etag) and ack.etag.lower() != digest.md5_hex:
            # With an explicit checksum setting the checksum is the proof and the ETag may be
            # opaque (encryption at rest); otherwise a hex ETag that is not our MD5 means
            # other bytes were stored.
            if not (trust_checksum and answered is not None):
                raise Corrupted(
                    f"{what}: the target answered ETag {ack.etag}, "
                    f"the bytes sent have MD5 {digest.md5_hex}"
                )

    @staticmethod
    def method(*, etag_ok: bool, checksum_ok: bool, algorithm: str | None) -> str:
        """The name of the verification that held, as recorded for the item."""
        if etag_ok and checksum_ok:
            return f"etag+{algorithm}"
        if etag_ok:
            return "etag"
        if checksum_ok:
            return f"checksum-{algorithm}"
        return "size"

    async def multipart(self, item: Item, parts: list[StoredPart], ack: Ack) -> str:
        """Check a completed multipart object against its parts as read; the method name."""
        # Parts sent to a target that checks their checksums were not hashed with MD5: the
        # ETag then cannot be compared, and the object's checksum must be.
        hashed = all(p.md5 for p in parts)
        expected = multipart_etag(bytes.fromhex(p.md5 or "") for p in parts)
        etag_ok = False
        trust_checksum = self._job.target.checksum in ("crc32c", "sha256")
        if hashed and is_md5_etag(ack.etag):
            etag_ok = ack.etag.lower() == expected
            if not etag_ok and not trust_checksum:
                raise VerificationFailed(
                    f"the completed object has ETag {ack.etag}; the parts read give {expected}"
                )
        checksum_ok = False
        algorithm = item.checksum
        if algorithm and all(p.checksum for p in parts):
            answered = ack.checksums.get(algorithm)
            if not answered and not hashed:
                head = await self.head_target(item)
                answered = head.checksums.get(algorithm) if head else None
            if answered:
                wanted = self.parts_checksum(algorithm, parts)
                checksum_ok = same_checksum(answered, wanted)
                if not checksum_ok:
                    raise VerificationFailed(
                        f"the completed object has {algorithm} {answered}; "
                        f"the parts read give {wanted}"
                    )
        if not hashed and not checksum_ok:
            self._findings.checksum_unanswered()
            raise VerificationFailed(
                f"the target answered no {algorithm} for the completed object, and its parts "
                "were not hashed with MD5"
            )
        if trust_checksum and not checksum_ok and not etag_ok and is_md5_etag(ack.etag):
            raise VerificationFailed(
                f"the completed object has ETag {ack.etag}; the parts read give {expected}"
            )
        method = self.method(etag_ok=etag_ok, checksum_ok=checksum_ok, algorithm=algorithm)
        if method == "size":
            await self.check_size(item)
        if self._job.config.verify == "full":
            spans = [
                ((p.part_number - 1) * (item.part_size or 0), p.size, p.md5 or "") for p in parts
            ]
            await self.reread(item, spans)
            method += "+full"
        return method

    async def server_copy(self, item: Item, ack: Ack) -> str:
        """Check an object the target copied itself, as far as config asks; the method name."""
        await self.check_size(item)
        source_md5 = item.etag.strip('"').lower()
        if is_plain_md5(source_md5) and ack.etag.lower() == source_md5:
            return "server-copy+etag"
        if self._job.config.verify_server_copies and is_plain_md5(source_md5):
            await self.reread(item, [(0, item.size, source_md5)])
            return "server-copy+md5"
        if self._job.config.verify == "full":
            source = self._job.source
            md5 = await self._reader.hash_object(source.storage, source.bucket, item.key, "source")
            await self.reread(item, [(0, item.size, md5)])
            return "server-copy+full"
        return "server-copy+size"

    async def head_target(self, item: Item) -> Ack | None:
        """The target object's ETag, checksums and size; None if it is not there."""
        target = self._job.target

        async def head() -> Ack | None:
            try:
                info = await target.storage.head(target.bucket, item.target_key, checksums=True)
            except NoSuchKey:
                return None
            except Exception as exc:
                raise translate(exc, "target") from exc
            return Ack.of_object(info)

        return await self._job.retry.call(f"HEAD target {item.target_key!r}", head)

    @staticmethod
    def parts_checksum(algorithm: str, parts: list[StoredPart]) -> str:
        """The composite checksum the target should answer for an object of these parts."""
        return composite_checksum(algorithm, (base64.b64decode(p.checksum or "") for p in parts))

    async def check_size(self, item: Item) -> None:
        head = await self.head_target(item)
        if head is None or head.size != item.size:
            found = "nothing" if head is None else f"{head.size} bytes"
            raise VerificationFailed(f"the target holds {found}; {item.size} bytes were sent")

    async def reread(self, item: Item, spans: list[tuple[int, int, str]]) -> None:
        """Read the target back (verify="full") and compare each span's MD5."""
        for start, length, md5 in spans:
            found = await self._reader.hash_object(
                self._job.target.storage,
                self._job.target.bucket,
                item.target_key,
                "target",
                start=start,
                length=length,
            )
            if found != md5:
                raise VerificationFailed(
                    f"bytes {start}..{start + length - 1} read back from the target have MD5 "
                    f"{found}; the source's have {md5}"
                )
