"""Files of the `local` backend: new private files, synced writes and renames, kernel copies,
and object bodies read back in chunks on a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Protocol

from storage.checksums import new_checksum
from storage.exceptions import BackendUnavailable
from storage.files import open_private

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
