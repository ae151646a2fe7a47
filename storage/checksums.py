"""S3's flexible checksums (x-amz-checksum-*): their names on the wire and how they are computed.

A checksum is a base64 digest of the body; for a multipart upload the composite form is
`b64(hash(concat(part digests)))-N`. Both backends and the copy engine use these, so an
algorithm is named and computed in one place.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Protocol

import google_crc32c

ALGORITHMS = ("crc32c", "sha256")
HEADER = {"crc32c": "x-amz-checksum-crc32c", "sha256": "x-amz-checksum-sha256"}
XML_ELEMENT = {"crc32c": "ChecksumCRC32C", "sha256": "ChecksumSHA256"}
ALGORITHM_NAME = {"crc32c": "CRC32C", "sha256": "SHA256"}


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


class ChecksumHash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc32c:
    """google_crc32c behind hashlib's update()/digest() shape."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # google_crc32c takes read-only buffers only; bytes from a socket pass as they are.
        self._value = google_crc32c.extend(
            self._value, data if isinstance(data, bytes) else bytes(data)
        )

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def new_checksum(algorithm: str) -> ChecksumHash:
    if algorithm == "crc32c":
        return _Crc32c()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def composite_checksum(algorithm: str, part_checksums: Iterable[bytes]) -> str:
    parts = list(part_checksums)
    outer = new_checksum(algorithm)
    outer.update(b"".join(parts))
    return f"{b64(outer.digest())}-{len(parts)}"
