"""The embedded default backend: buckets in a directory.

Layout under the root, per bucket:

    <bucket>/index.sqlite3         keys -> data files, metadata, multipart state (local_index.py)
    <bucket>/data/<xx>/<id>        object bodies, named by an opaque id, never by the key
    <bucket>/uploads/<upload>/     parts of open multipart uploads
    <bucket>/tmp/                  bodies being received

Keys never become file names, so no key (`../x`, `/abs`, a 1024-byte key) can reach outside
the root or collide with another; bucket names are held to S3's rules, which make them a
single plain path component. A body is written to a temp file while its MD5 is computed,
fsynced and renamed into place before the index points at it, so a crash leaves at worst an
unreferenced file, never a key with a torn body.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from storage.base import (
    Body,
    Checksum,
    ListPage,
    ObjectInfo,
    ObjectStream,
    PartInfo,
    PartSpan,
    Storage,
    check_key,
    parts_in_etag,
    whole_object_part,
)
from storage.checksums import b64, composite_checksum, new_checksum
from storage.exceptions import (
    BackendUnavailable,
    InvalidPart,
    InvalidPartNumber,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PartsUnknown,
    PreconditionFailed,
)
from storage.files import private_dir
from storage.local_files import (
    FileBody,
    Missing,
    commit_data,
    concatenate,
    data_path,
    open_if_present,
    part_checksums,
    receive,
    translated,
)
from storage.local_index import (
    BucketIndex,
    StoredObject,
    Upload,
    from_ms,
    parts_to_join,
    same_etag,
    to_ms,
)
from storage.validation import (
    check_bucket_name,
    clean_content_type,
    clean_headers,
    clean_metadata,
    resolve_range,
)

MIB = 1024 * 1024
MAX_LIST_KEYS = 1000  # what an S3 server caps max-keys at; the local backend matches it
MAX_PART_NUMBER = 10_000
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{32}")


class LocalStorage(Storage):
    """A directory as an S3-like store. Safe for several processes sharing one root."""

    def __init__(
        self,
        root: Path,
        *,
        min_part_size: int = 5 * MIB,
        chunk_size: int = 256 * 1024,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.root = Path(root)
        self.location = self.root.absolute().as_uri()
        self.min_part_size = min_part_size
        self.chunk_size = chunk_size
        self._clock = clock or (lambda: datetime.now(UTC))
        self._indexes: dict[str, BucketIndex] = {}
        self._indexes_lock = threading.Lock()

    # buckets

    async def create_bucket(self, bucket: str) -> None:
        check_bucket_name(bucket)
        with translated():
            await asyncio.to_thread(self._create_bucket, bucket)

    def _create_bucket(self, bucket: str) -> None:
        base = self.root / bucket
        for sub in ("data", "uploads", "tmp"):
            private_dir(base / sub)
        # The index file is what marks a bucket as existing, so it comes last.
        self._open_index(bucket)

    async def bucket_exists(self, bucket: str) -> bool:
        check_bucket_name(bucket)
        return await asyncio.to_thread(self._index_path(bucket).is_file)

    def _index_path(self, bucket: str) -> Path:
        return self.root / bucket / "index.sqlite3"

    def _open_index(self, bucket: str) -> BucketIndex:
        with self._indexes_lock:
            index = self._indexes.get(bucket)
            if index is None:
                index = BucketIndex(self._index_path(bucket))
                self._indexes[bucket] = index
            return index

    async def _index(self, bucket: str) -> BucketIndex:
        check_bucket_name(bucket)
        index = self._indexes.get(bucket)
        if index is not None:
            return index
        if not await asyncio.to_thread(self._index_path(bucket).is_file):
            raise NoSuchBucket(bucket)
        with translated():
            return await asyncio.to_thread(self._open_index, bucket)

    # reads

    async def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        if max_keys < 0:
            raise ValueError("max_keys must not be negative")
        index = await self._index(bucket)
        if max_keys == 0:
            return ListPage([], [], False, None)
        with translated():
            entries, truncated = await asyncio.to_thread(
                index.list_page,
                prefix.encode(),
                delimiter.encode(),
                start_after.encode(),
                min(max_keys, MAX_LIST_KEYS),
            )
        objects = [info for _, info in entries if info is not None]
        prefixes = [sort_key.decode() for sort_key, info in entries if info is None]
        next_start_after = entries[-1][0].decode() if truncated and entries else None
        return ListPage(objects, prefixes, truncated, next_start_after)

    async def head(self, bucket: str, key: str, *, checksums: bool = False) -> ObjectInfo:
        # Checksums are checked when a body arrives but not kept: `checksums` adds nothing.
        return (await self._stored(bucket, key)).info

    async def _stored(self, bucket: str, key: str) -> StoredObject:
        raw = check_key(key)
        index = await self._index(bucket)
        with translated():
            stored = await asyncio.to_thread(index.get, raw)
        if stored is None:
            raise NoSuchKey(key)
        return stored

    async def part_span(
        self, bucket: str, key: str, part_number: int
    ) -> tuple[ObjectInfo, PartSpan]:
        stored = await self._stored(bucket, key)
        info, sizes = stored.info, stored.part_sizes
        if sizes is None:
            if parts_in_etag(info.etag) > 1:
                raise PartsUnknown(f"{key!r} was completed before part sizes were recorded")
            return info, whole_object_part(info, part_number)
        if not 1 <= part_number <= len(sizes) or sizes[part_number - 1] == 0:
            raise InvalidPartNumber(f"{key!r} has {len(sizes)} parts, not {part_number}")
        first = sum(sizes[: part_number - 1])
        return info, PartSpan(part_number, len(sizes), first, first + sizes[part_number - 1] - 1)

    async def get(
        self, bucket: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        raw = check_key(key)
        index = await self._index(bucket)
        # A concurrent overwrite may delete the data file between the index lookup and the
        # open; looking again finds the new one. An open file stays readable after deletion.
        for _ in range(5):
            with translated():
                stored = await asyncio.to_thread(index.get, raw)
            if stored is None:
                raise NoSuchKey(key)
            first, last = resolve_range(stored.info.size, start, end)
            path = self._data_path(bucket, stored.data_id)
            try:
                with translated():
                    handle = await asyncio.to_thread(open_if_present, path)
            except Missing:
                continue
            body = FileBody(handle, first, last - first + 1, self.chunk_size)
            return ObjectStream(stored.info, first, last, body)
        raise BackendUnavailable(f"{key!r} kept changing while being opened")

    # writes

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
        raw = check_key(key)
        content_type = clean_content_type(content_type)
        clean_meta, clean_head = clean_metadata(metadata), clean_headers(headers)
        index = await self._index(bucket)
        with translated():
            received = await receive(self._tmp_dir(bucket), body, size, content_md5, checksum)
            tmp, md5, answered = received
            data_id = await asyncio.to_thread(commit_data, self.root / bucket, tmp)
            info = ObjectInfo(key, size, md5, self._now(), content_type, clean_meta, clean_head)
            await self._index_object(bucket, data_id, lambda: index.put(raw, data_id, info))
        if checksum is not None and answered is not None:
            # Checked on the way in, not kept: a later head() does not answer it.
            info = replace(info, checksums={checksum[0]: answered})
        return info

    async def copy_object(
        self, bucket: str, key: str, *, source_bucket: str, source_key: str, if_match: str
    ) -> ObjectInfo:
        stream = await self._pinned(source_bucket, source_key, if_match, None, None)
        info = stream.info
        try:
            return await self.put(
                bucket,
                key,
                stream.body,
                size=info.size,
                content_type=info.content_type,
                metadata=info.metadata,
                headers=info.headers,
            )
        finally:
            await stream.aclose()

    async def _pinned(
        self, bucket: str, key: str, if_match: str, start: int | None, end: int | None
    ) -> ObjectStream:
        """A read of an object that still has ETag `if_match` (else PreconditionFailed)."""
        stream = await self.get(bucket, key, start=start, end=end)
        if not same_etag(stream.info.etag, if_match):
            await stream.aclose()
            raise PreconditionFailed(f"{key!r} has ETag {stream.info.etag}, not {if_match}")
        return stream

    async def delete(self, bucket: str, key: str) -> None:
        raw = check_key(key)
        index = await self._index(bucket)
        with translated():
            old = await asyncio.to_thread(index.delete, raw)
            if old is not None:
                await asyncio.to_thread(self._data_path(bucket, old).unlink, missing_ok=True)

    # multipart

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
        # The algorithm is not kept: every part brings its checksum, and completion is told.
        if checksum_algorithm is not None:
            new_checksum(checksum_algorithm)  # refuses an unknown one
        raw = check_key(key)
        upload = Upload(
            uuid.uuid4().hex,
            key,
            clean_content_type(content_type),
            clean_metadata(metadata),
            clean_headers(headers),
        )
        index = await self._index(bucket)
        with translated():
            await asyncio.to_thread(private_dir, self._upload_dir(bucket, upload.upload_id))
            await asyncio.to_thread(index.create_upload, upload, raw, self._now())
        return upload.upload_id

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
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise InvalidPart(f"part number {part_number} is outside 1..{MAX_PART_NUMBER}")
        index = await self._index(bucket)
        await self._open_upload(index, key, upload_id)
        with translated():
            received = await receive(self._tmp_dir(bucket), body, size, content_md5, checksum)
            tmp, md5, answered = received
            part = PartInfo(part_number, size, md5, answered)
            file_name = f"{part_number}.{uuid.uuid4().hex}"
            target = self._upload_dir(bucket, upload_id) / file_name
            try:
                await asyncio.to_thread(tmp.replace, target)
            except FileNotFoundError:
                await asyncio.to_thread(tmp.unlink, missing_ok=True)
                raise NoSuchUpload(upload_id) from None
            recorded, old = await asyncio.to_thread(index.put_part, upload_id, part, file_name)
            if not recorded:
                await asyncio.to_thread(target.unlink, missing_ok=True)
                raise NoSuchUpload(upload_id)
            if old is not None:
                await asyncio.to_thread((target.parent / old).unlink, missing_ok=True)
        return part

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
        stream = await self._pinned(source_bucket, source_key, if_match, start, end)
        try:
            return await self.upload_part(
                bucket, key, upload_id, part_number, stream.body, size=stream.end - start + 1
            )
        finally:
            await stream.aclose()

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[PartInfo],
        *,
        checksum_algorithm: str | None = None,
    ) -> ObjectInfo:
        index = await self._index(bucket)
        upload = await self._open_upload(index, key, upload_id)
        with translated():
            stored = {
                p.part.part_number: p for p in await asyncio.to_thread(index.list_parts, upload_id)
            }
        files = parts_to_join(parts, stored, self.min_part_size)
        upload_dir = self._upload_dir(bucket, upload_id)
        paths = [upload_dir / name for name in files]
        checksums = {}
        if checksum_algorithm is not None:
            with translated():
                summed = await asyncio.to_thread(part_checksums, checksum_algorithm, paths)
            for part, digest in zip(parts, summed, strict=True):
                if part.checksum is not None and part.checksum != b64(digest):
                    raise InvalidPart(f"part {part.part_number} has another {checksum_algorithm}")
            checksums[checksum_algorithm] = composite_checksum(checksum_algorithm, summed)
        with translated():
            tmp = await asyncio.to_thread(concatenate, self._tmp_dir(bucket), paths)
            data_id = await asyncio.to_thread(commit_data, self.root / bucket, tmp)
            digests = b"".join(bytes.fromhex(stored[p.part_number].part.etag) for p in parts)
            etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
            info = ObjectInfo(
                key,
                sum(stored[p.part_number].part.size for p in parts),
                etag,
                self._now(),
                upload.content_type,
                upload.metadata,
                upload.headers,
            )
            raw = key.encode()

            sizes = tuple(stored[p.part_number].part.size for p in parts)

            def finish() -> str | None:
                still_open, old = index.finish_upload(upload_id, raw, data_id, info, sizes)
                if not still_open:
                    raise NoSuchUpload(upload_id)
                return old

            await self._index_object(bucket, data_id, finish)
            await asyncio.to_thread(shutil.rmtree, upload_dir, ignore_errors=True)
        return replace(info, checksums=checksums)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        index = await self._index(bucket)
        await self._open_upload(index, key, upload_id)
        with translated():
            if not await asyncio.to_thread(index.delete_upload, upload_id):
                raise NoSuchUpload(upload_id)
            await asyncio.to_thread(
                shutil.rmtree, self._upload_dir(bucket, upload_id), ignore_errors=True
            )

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]:
        index = await self._index(bucket)
        await self._open_upload(index, key, upload_id)
        with translated():
            return [p.part for p in await asyncio.to_thread(index.list_parts, upload_id)]

    async def _open_upload(self, index: BucketIndex, key: str, upload_id: str) -> Upload:
        check_key(key)
        # The id becomes a directory name: anything but our own hex ids cannot exist.
        if not _UPLOAD_ID_RE.fullmatch(upload_id):
            raise NoSuchUpload(upload_id)
        with translated():
            upload = await asyncio.to_thread(index.get_upload, upload_id)
        if upload is None or upload.key != key:
            raise NoSuchUpload(upload_id)
        return upload

    # health and lifecycle

    async def ping(self) -> None:
        # The root is ours: a fresh machine has none yet, and that is healthy.
        with translated():
            await asyncio.to_thread(private_dir, self.root)
        ok = await asyncio.to_thread(os.access, self.root, os.W_OK | os.X_OK)
        if not ok:
            raise BackendUnavailable(f"storage root {self.root} is not a writable directory")

    async def close(self) -> None:
        with self._indexes_lock:
            indexes, self._indexes = list(self._indexes.values()), {}
        for index in indexes:
            await asyncio.to_thread(index.close)

    def _now(self) -> datetime:
        # Milliseconds, as the index keeps them: what put() returns equals what head() says.
        return from_ms(to_ms(self._clock()))

    def _data_path(self, bucket: str, data_id: str) -> Path:
        return data_path(self.root / bucket, data_id)

    def _upload_dir(self, bucket: str, upload_id: str) -> Path:
        return self.root / bucket / "uploads" / upload_id

    def _tmp_dir(self, bucket: str) -> Path:
        return self.root / bucket / "tmp"

    async def _index_object(
        self, bucket: str, data_id: str, update: Callable[[], str | None]
    ) -> None:
        """Point the index at a committed data file (`update`), then drop the file it replaced."""
        try:
            old = await asyncio.to_thread(update)
        except BaseException:
            await asyncio.to_thread(self._data_path(bucket, data_id).unlink, missing_ok=True)
            raise
        if old is not None:
            await asyncio.to_thread(self._data_path(bucket, old).unlink, missing_ok=True)
