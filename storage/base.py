"""The one async interface every storage backend implements.

Keys are arbitrary S3 keys (1 to 1024 bytes of UTF-8); listings come in S3 order (UTF-8 byte
order). Bodies are async iterators of bytes in both directions: nothing here holds a whole
object in memory.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

MAX_KEY_BYTES = 1024

# An object body: streamed, or in memory (which a backend may send again on a retry).
Body = AsyncIterator[bytes] | bytes | bytearray
# A flexible checksum sent with a body: (algorithm, base64 digest), see storage.checksums.
Checksum = tuple[str, str]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # without quotes: hex MD5, or "<hex>-<parts>" for multipart
    last_modified: datetime  # timezone-aware UTC
    content_type: str = "binary/octet-stream"
    metadata: Mapping[str, str] = field(default_factory=dict)  # user metadata, lower-case names
    # Content-Encoding, Content-Disposition, Cache-Control, Expires when set
    headers: Mapping[str, str] = field(default_factory=dict)
    # False when a plain-hex ETag is still not the body's MD5 (S3's SSE-KMS and SSE-C).
    etag_is_md5: bool = True
    # Flexible checksums the backend answered (algorithm -> base64, "-N" for a composite):
    # from a write that sent one, or a head(checksums=True).
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListPage:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    # Pass as start_after to get the next page (the last key or common prefix returned).
    next_start_after: str | None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    size: int
    etag: str  # hex MD5 of the part, without quotes
    checksum: str | None = None  # base64 flexible checksum, for uploads created with one


@dataclass(frozen=True)
class PartSpan:
    """Where one part of a stored object lies: bytes first..last inclusive, of `count` parts.

    An object stored in one piece has one part, the whole object.
    """

    number: int
    count: int
    first: int
    last: int


@dataclass
class ObjectStream:
    """An open GET: the object's info, the byte range served and the body.

    `aclose()` must be called (or the body iterated to the end) to release the backend read.
    """

    info: ObjectInfo
    start: int  # first byte served
    end: int  # last byte served, inclusive (start - 1 for an empty object)
    body: AsyncIterator[bytes]

    async def aclose(self) -> None:
        close = getattr(self.body, "aclose", None)
        if close is not None:
            await close()


class Storage(abc.ABC):
    """A storage backend. Buckets are the backend's own; `db.buckets` maps Ferry buckets to them.

    `location` names where the backend keeps its data (an endpoint URL, a directory): with a
    bucket it identifies a copy target in the transfer ledger, so it must be stable.
    """

    location: str = ""

    @abc.abstractmethod
    async def create_bucket(self, bucket: str) -> None:
        """Create the bucket; do nothing if it exists."""

    @abc.abstractmethod
    async def bucket_exists(self, bucket: str) -> bool: ...

    @abc.abstractmethod
    async def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        """One page of keys after `start_after` (exclusive) that start with `prefix`.

        With a delimiter, keys sharing the part up to the first delimiter after the prefix are
        rolled into one common prefix; each common prefix counts as one entry toward max_keys.
        """

    @abc.abstractmethod
    async def head(self, bucket: str, key: str, *, checksums: bool = False) -> ObjectInfo:
        """Raises NoSuchKey. `checksums`: also answer the object's flexible checksums."""

    @abc.abstractmethod
    async def part_span(
        self, bucket: str, key: str, part_number: int
    ) -> tuple[ObjectInfo, PartSpan]:
        """The object's info and where its part `part_number` (from 1) lies.

        Raises NoSuchKey, InvalidPartNumber (no such part, or an empty object), PartsUnknown.
        """

    @abc.abstractmethod
    async def get(
        self, bucket: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        """Open a read of bytes start..end inclusive (both optional, as in an HTTP Range).

        `start=None, end=N` means the last N bytes. Raises NoSuchKey, InvalidRange.
        """

    @abc.abstractmethod
    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        size: int,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_md5: str | None = None,
        checksum: Checksum | None = None,
    ) -> ObjectInfo:
        """Store exactly `size` bytes from `body` as one object.

        `content_md5` (base64) and `checksum` are checked against the bytes received
        (BadDigest when they differ); the checksum is answered in `ObjectInfo.checksums`.
        """

    @abc.abstractmethod
    async def create_multipart(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        checksum_algorithm: str | None = None,
    ) -> str:
        """Start a multipart upload; returns its upload id.

        With `checksum_algorithm`, every part is sent with that checksum and the completed
        object answers the composite one.
        """

    @abc.abstractmethod
    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: Body,
        *,
        size: int,
        content_md5: str | None = None,
        checksum: Checksum | None = None,
    ) -> PartInfo:
        """Store one part; `content_md5` and `checksum` are checked as in `put`."""

    @abc.abstractmethod
    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[PartInfo],
        *,
        checksum_algorithm: str | None = None,
    ) -> ObjectInfo:
        """Assemble the parts (in part-number order); ETag is md5(part md5s)-N.

        With `checksum_algorithm`, each part's `checksum` is checked and the object's
        composite checksum is answered in `ObjectInfo.checksums`.
        """

    @abc.abstractmethod
    async def copy_object(
        self, bucket: str, key: str, *, source_bucket: str, source_key: str, if_match: str
    ) -> ObjectInfo:
        """Copy an object of this backend, metadata included, if its ETag is still
        `if_match` (else PreconditionFailed)."""

    @abc.abstractmethod
    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        source_bucket: str,
        source_key: str,
        start: int,
        end: int,
        if_match: str,
    ) -> PartInfo:
        """Bytes start..end (inclusive) of an object of this backend as a part, if the
        object's ETag is still `if_match` (else PreconditionFailed)."""

    def can_copy_from(self, other: Storage) -> bool:
        """Whether copy_object/upload_part_copy can read `other`'s objects server-side."""
        return other is self

    @abc.abstractmethod
    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None: ...

    @abc.abstractmethod
    async def list_parts(
        self, bucket: str, key: str, upload_id: str
    ) -> builtins.list[PartInfo]: ...

    @abc.abstractmethod
    async def delete(self, bucket: str, key: str) -> None:
        """Delete the object; deleting a missing key is not an error (as in S3)."""

    # Optional hooks: a backend with nothing to check or release keeps these no-ops.
    async def ping(self) -> None:  # noqa: B027
        """Raise BackendUnavailable if the backend cannot be reached (for health checks)."""

    async def close(self) -> None:  # noqa: B027
        """Release connections and files."""


def parts_in_etag(etag: str) -> int:
    """How many parts an S3 ETag says its object has: `<hex>-N` is N, a plain one is 1."""
    _, dash, count = etag.rpartition("-")
    return int(count) if dash and count.isascii() and count.isdigit() else 1


def whole_object_part(info: ObjectInfo, part_number: int) -> PartSpan:
    """Part `part_number` of an object stored in one piece: part 1 is all of it.

    An empty object has no byte to serve, so no part: S3 answers a ranged read of it 416.
    """
    from storage.exceptions import InvalidPartNumber

    if part_number != 1 or info.size == 0:
        raise InvalidPartNumber(f"{info.key!r} has no part {part_number}")
    return PartSpan(1, 1, 0, info.size - 1)


def check_key(key: str) -> bytes:
    """Validate an S3 key and return its UTF-8 bytes."""
    from storage.exceptions import InvalidKey

    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKey("key is not valid UTF-8") from exc
    if not raw:
        raise InvalidKey("key is empty")
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidKey(f"key is {len(raw)} bytes; S3 allows at most {MAX_KEY_BYTES}")
    return raw
