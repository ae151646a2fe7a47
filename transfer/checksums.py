"""Hashes computed while bytes are read, and the values a target should answer with.

The flexible checksums themselves are defined once, in storage.checksums.

S3's ETag of a single-part upload is the hex MD5 of the body; of a multipart upload it is
`md5(concat(part md5 digests))-N`. Flexible checksums (x-amz-checksum-*) are base64 digests;
for a multipart upload the composite form is `b64(hash(concat(part digests)))-N`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from storage.checksums import (
    ALGORITHM_NAME,
    ALGORITHMS,
    HEADER,
    XML_ELEMENT,
    ChecksumHash,
    b64,
    composite_checksum,
    new_checksum,
)

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_NAME",
    "HEADER",
    "XML_ELEMENT",
    "Digest",
    "Hasher",
    "b64",
    "composite_checksum",
    "is_md5_etag",
    "is_plain_md5",
    "multipart_etag",
    "new_checksum",
    "same_checksum",
]

_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_MULTIPART_ETAG = re.compile(r"[0-9a-f]{32}-[0-9]+")


@dataclass(frozen=True)
class Digest:
    """What was read: its size, MD5 and (when asked for) a flexible checksum."""

    size: int
    md5: bytes | None  # None: not hashed, the checksum alone proves the bytes (see Hasher)
    checksum: bytes | None = None
    # True: `md5` is the source's ETag, not hashed here; the target checks it (Content-MD5).
    md5_from_source: bool = False

    @property
    def md5_hex(self) -> str | None:
        return None if self.md5 is None else self.md5.hex()

    @property
    def md5_b64(self) -> str | None:
        return None if self.md5 is None else b64(self.md5)

    @property
    def checksum_b64(self) -> str | None:
        return None if self.checksum is None else b64(self.checksum)


class Hasher:
    """MD5 (unless the source's is taken, or `md5` is False) and an optional flexible
    checksum, fed in order."""

    def __init__(
        self, algorithm: str | None, *, source_md5: bytes | None = None, md5: bool = True
    ) -> None:
        if not md5 and algorithm is None:
            raise ValueError("without an MD5 a flexible checksum is needed")
        self._source_md5 = source_md5
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 and source_md5 is None else None
        self._checksum: ChecksumHash | None = None if algorithm is None else new_checksum(algorithm)
        self._size = 0

    def update(self, data: bytes) -> None:
        self.update_md5(data)
        self.update_checksum(data)

    def update_md5(self, data: bytes | bytearray | memoryview) -> None:
        """Feed the MD5 alone (it releases the GIL, so a worker thread may run it)."""
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)

    def update_checksum(self, data: bytes) -> None:
        """Feed the flexible checksum alone (google_crc32c takes bytes only)."""
        if self._checksum is not None:
            self._checksum.update(data)

    def result(self) -> Digest:
        checksum = None if self._checksum is None else self._checksum.digest()
        if self._source_md5 is not None:
            return Digest(self._size, self._source_md5, checksum, md5_from_source=True)
        return Digest(self._size, None if self._md5 is None else self._md5.digest(), checksum)


def multipart_etag(part_md5s: Iterable[bytes]) -> str:
    md5s = list(part_md5s)
    combined = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(md5s)}"


def is_md5_etag(etag: str) -> bool:
    """Whether an ETag looks like an MD5 (single part) or an MD5-of-MD5s (multipart) ETag.

    Targets that encrypt or store objects their own way answer with other ETags; for them
    the ETag proves nothing and verification falls back to checksums, else size.
    """
    etag = etag.strip('"').lower()
    return bool(_MD5_HEX.fullmatch(etag) or _MULTIPART_ETAG.fullmatch(etag))


def is_plain_md5(etag: str) -> bool:
    return bool(_MD5_HEX.fullmatch(etag.strip('"').lower()))


def same_checksum(answered: str | None, expected: str) -> bool:
    """Compare a checksum answer with ours; servers may omit the composite "-N" suffix."""
    if not answered:
        return False
    if answered == expected:
        return True
    return answered.split("-")[0] == expected.split("-")[0] and "-" not in answered
