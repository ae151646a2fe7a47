"""Files of the `local` backend: bodies received into synced files (hashed and checked on
the way), new private files, synced writes and renames, kernel copies, parts joined, and
object bodies read back in chunks on a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from storage.base import Body, Checksum
from storage.checksums import b64, new_checksum
from storage.exceptions import BackendUnavailable, BadDigest, IncompleteBody, StorageError
from storage.files import open_private, private_dir

WRITE_BATCH = 1024 * 1024  # gather small chunks so each thread hop writes a useful amount


class _Hash(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...


class FileBody:
    """An object body read from an open file in chunks, in a worker thread.

    A class rather than an async generator so that `aclose()` closes the file even when the
    body was never iterated (an unstarted generator would skip its `finally`).
    """

    def __init__(self, handle: BinaryIO, start: int, length: int, chunk_size: int) -> None:
        self._handle = handle
        self._position = start
        self._remaining = length
        self._chunk_size = chunk_size

    def __aiter__(self) -> FileBody:
        return self

    async def __anext__(self) -> bytes:
        if self._remaining <= 0 or self._handle.closed:
            self._handle.close()
            raise StopAsyncIteration
        want = min(self._chunk_size, self._remaining)
        try:
            chunk = await asyncio.to_thread(os.pread, self._handle.fileno(), want, self._position)
        except OSError as exc:
            self._handle.close()
            raise BackendUnavailable(f"reading object data failed: {exc}") from exc
        if not chunk:
            self._handle.close()
            raise BackendUnavailable("object data file is shorter than its index entry")
        self._position += len(chunk)
        self._remaining -= len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._handle.close()


def new_file(path: Path) -> BinaryIO:
    """A new file (never an existing one), 0600: object bodies are the users' data."""
    return os.fdopen(open_private(path, os.O_WRONLY | os.O_EXCL), "wb")


def write_hashed(handle: BinaryIO, hashes: tuple[_Hash, ...], data: bytes | bytearray) -> None:
    for hashed in hashes:
        hashed.update(data)
    handle.write(data)


def copy_into(source: BinaryIO, out: BinaryIO) -> None:
    """Append all of `source` to `out`, in the kernel where it can (no trip through Python)."""
    size = os.fstat(source.fileno()).st_size
    copied = 0
    with contextlib.suppress(OSError):
        while copied < size:
            done = os.copy_file_range(source.fileno(), out.fileno(), size - copied)
            if not done:
                break
            copied += done
    if copied < size:
        # Not supported across these files (EXDEV, ENOSYS, EINVAL): finish through userspace.
        source.seek(copied)
        out.seek(0, os.SEEK_END)
        shutil.copyfileobj(source, out, WRITE_BATCH)
        out.flush()  # before the next source's kernel copy writes at the descriptor's offset


def sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def sync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Missing(Exception):
    """The data file vanished between lookup and open (a concurrent overwrite)."""


def open_if_present(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise Missing(str(path)) from None


def part_checksums(algorithm: str, paths: list[Path]) -> list[bytes]:
    """The flexible checksum of each file, read in WRITE_BATCH pieces."""
    digests = []
    for path in paths:
        summed = new_checksum(algorithm)
        with path.open("rb") as part:
            while chunk := part.read(WRITE_BATCH):
                summed.update(chunk)
        digests.append(summed.digest())
    return digests


async def receive(
    tmp_dir: Path,
    body: Body,
    size: int,
    content_md5: str | None = None,
    checksum: Checksum | None = None,
) -> tuple[Path, str, str | None]:
    """Stream exactly `size` bytes into a synced file in `tmp_dir`; returns it, its hex MD5
    and, when one was sent, its checksum, checked (as is `content_md5`) before it is kept."""
    if size < 0:
        raise ValueError("size must not be negative")
    tmp = tmp_dir / uuid.uuid4().hex
    handle = await _new_file_uncancelled(tmp)
    md5 = hashlib.md5(usedforsecurity=False)
    summed = None if checksum is None else new_checksum(checksum[0])
    hashes = (md5,) if summed is None else (md5, summed)
    try:
        received = 0
        pending = bytearray()
        async for chunk in _chunks(body):
            received += len(chunk)
            if received > size:
                raise IncompleteBody(f"body is longer than the announced {size} bytes")
            if not pending and len(chunk) >= WRITE_BATCH:
                # Already a useful size (a whole upload part, say): no copy into the batch.
                await asyncio.to_thread(write_hashed, handle, hashes, chunk)
                continue
            pending += chunk
            if len(pending) >= WRITE_BATCH:
                batch, pending = pending, bytearray()
                await asyncio.to_thread(write_hashed, handle, hashes, batch)
        if received < size:
            raise IncompleteBody(f"body ended after {received} of {size} bytes")
        await asyncio.to_thread(write_hashed, handle, hashes, pending)
        await asyncio.to_thread(sync_close, handle)
        answered = None if summed is None else b64(summed.digest())
        _check_digests(md5.digest(), content_md5, answered, checksum)
    except BaseException:
        handle.close()
        await asyncio.to_thread(tmp.unlink, missing_ok=True)
        raise
    return tmp, md5.hexdigest(), answered


def data_path(bucket_dir: Path, data_id: str) -> Path:
    return bucket_dir / "data" / data_id[:2] / data_id


def commit_data(bucket_dir: Path, tmp: Path) -> str:
    """Move a synced temp file to its final place under a fresh id; returns the id."""
    data_id = uuid.uuid4().hex
    target = data_path(bucket_dir, data_id)
    private_dir(target.parent)
    tmp.replace(target)
    sync_dir(target.parent)
    return data_id


def concatenate(tmp_dir: Path, sources: list[Path]) -> Path:
    """The parts' files joined into one synced file in `tmp_dir`."""
    tmp = tmp_dir / uuid.uuid4().hex
    try:
        with new_file(tmp) as out:
            for source in sources:
                with source.open("rb") as part:
                    copy_into(part, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


async def _new_file_uncancelled(path: Path) -> BinaryIO:
    """new_file on a worker thread; a cancel while it opens closes and removes the file
    (the thread finishes anyway, and its handle would otherwise leak)."""
    opening = asyncio.ensure_future(asyncio.to_thread(new_file, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            (await opening).close()
            await asyncio.to_thread(path.unlink, missing_ok=True)
        raise


async def _chunks(body: Body) -> AsyncIterator[bytes | bytearray]:
    if isinstance(body, bytes | bytearray):
        yield body
        return
    async for chunk in body:
        yield chunk


def _check_digests(
    md5: bytes, content_md5: str | None, answered: str | None, checksum: Checksum | None
) -> None:
    """BadDigest unless the body has the Content-MD5 and checksum it was sent with."""
    if content_md5 is not None and b64(md5) != content_md5:
        raise BadDigest(f"the body's MD5 {b64(md5)} is not the Content-MD5 {content_md5}")
    if checksum is not None and answered != checksum[1]:
        raise BadDigest(f"the body's {checksum[0]} {answered} is not the {checksum[1]} sent")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn filesystem and SQLite failures into BackendUnavailable at the backend's boundary."""
    try:
        yield
    except StorageError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise BackendUnavailable(f"local storage failed: {exc}") from exc
