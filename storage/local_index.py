"""The local backend's per-bucket index: one SQLite file mapping keys to data files.

Keys are stored as BLOBs of their UTF-8 bytes, so `ORDER BY key` is S3's order (UTF-8 byte
order, which SQLite's memcmp gives us) and every comparison here is on bytes. Every method is
synchronous and meant to run in a worker thread (`asyncio.to_thread`); one connection per bucket
is shared by those threads behind a lock. WAL mode lets other processes on the same root (a
`ferry worker` beside `ferry serve`) read while one writes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from storage.base import ObjectInfo, PartInfo
from storage.exceptions import InvalidPart
from storage.files import touch_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    key BLOB PRIMARY KEY,
    data_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    headers TEXT NOT NULL,
    part_sizes TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    created_ms INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    headers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL REFERENCES uploads(upload_id) ON DELETE CASCADE,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    file_name TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
"""

# Spelled out in full in each statement: no SQL is ever assembled from strings here.
_GET_OBJECT = (
    "SELECT key, data_id, size, etag, last_modified_ms, content_type, metadata, headers,"
    " part_sizes FROM objects WHERE key = ?"
)
_SELECT_OBJECTS = (
    "SELECT key, data_id, size, etag, last_modified_ms, content_type, metadata, headers,"
    " part_sizes FROM objects"
)
# One lower bound (inclusive or not) and an optional upper bound, each a plain range term on
# the primary key, so the scan starts and ends where the index says instead of filtering.
_SCANS = {
    (False, False): _SELECT_OBJECTS + " WHERE key > ? ORDER BY key LIMIT ?",
    (True, False): _SELECT_OBJECTS + " WHERE key >= ? ORDER BY key LIMIT ?",
    (False, True): _SELECT_OBJECTS + " WHERE key > ? AND key < ? ORDER BY key LIMIT ?",
    (True, True): _SELECT_OBJECTS + " WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
}
_REPLACE_OBJECT = (
    "INSERT OR REPLACE INTO objects"
    " (key, data_id, size, etag, last_modified_ms, content_type, metadata, headers, part_sizes)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class StoredObject:
    info: ObjectInfo
    data_id: str
    # Each part's size for a multipart object, in order; None for one stored in one piece,
    # and for a multipart object completed before the index kept them.
    part_sizes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Upload:
    upload_id: str
    key: str
    content_type: str
    metadata: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class PartFile:
    part: PartInfo
    file_name: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(when: datetime) -> int:
    return (when - _EPOCH) // timedelta(milliseconds=1)


def from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string that starts with `prefix` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class BucketIndex:
    """The index of one bucket. Not async: call its methods through `asyncio.to_thread`."""

    def __init__(self, path: Path) -> None:
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) where a read
        # and a write must be atomic, so two processes cannot both replace the same key.
        touch_private(path)  # before SQLite makes it (and its -wal, -shm) with the umask's mode
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: a row must not point at a data file the index forgets after a power cut.
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}
            if "part_sizes" not in columns:
                # An index from before part sizes were kept: its multipart objects answer
                # partNumber reads with PartsUnknown, everything else is as it was.
                self._db.execute("ALTER TABLE objects ADD COLUMN part_sizes TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # objects

    def get(self, key: bytes) -> StoredObject | None:
        rows = self._query(_GET_OBJECT, (key,))
        return _stored(rows[0]) if rows else None

    def put(self, key: bytes, data_id: str, info: ObjectInfo) -> str | None:
        """Insert or replace the row; returns the data id the key pointed at before, if any."""
        with self._transaction() as db:
            return _replace(db, key, data_id, info, None)

    def delete(self, key: bytes) -> str | None:
        with self._transaction() as db:
            row = db.execute("SELECT data_id FROM objects WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM objects WHERE key = ?", (key,))
            return str(row[0])

    def list_page(
        self, prefix: bytes, delimiter: bytes, start_after: bytes, max_keys: int
    ) -> tuple[list[tuple[bytes, ObjectInfo | None]], bool]:
        """Up to `max_keys` entries after `start_after`: (sort key, info) for objects and
        (common prefix, None) for rolled-up prefixes, in order; and whether more follow.

        An entry is returned only if it sorts after `start_after`, common prefixes included,
        so the last entry of a page is always a correct `start_after` for the next one. After
        meeting a common prefix the scan jumps past every key under it with one range query.
        """
        want = max_keys + 1  # one more than asked tells whether the page is truncated
        entries: list[tuple[bytes, ObjectInfo | None]] = []
        after = start_after  # exclusive lower bound
        from_ = prefix  # inclusive lower bound
        upper = successor(prefix) if prefix else None
        with self._lock:
            while len(entries) < want:
                inclusive = from_ > after  # then `key >= from_` implies `key > after`
                bounds = (from_ if inclusive else after,) + (() if upper is None else (upper,))
                sql = _SCANS[inclusive, upper is not None]
                # Rows are stepped through lazily: leaving the loop early reads no more.
                cursor = self._db.execute(sql, (*bounds, want - len(entries)))
                jumped = False
                for row in cursor:
                    key: bytes = row[0]
                    cut = key.find(delimiter, len(prefix)) if delimiter else -1
                    if cut >= 0:
                        common = key[: cut + len(delimiter)]
                        if common > start_after:
                            entries.append((common, None))
                        skip_to = successor(common)
                        if skip_to is None:
                            return entries[:max_keys], len(entries) > max_keys
                        from_ = skip_to
                        jumped = True
                        break
                    entries.append((key, _stored(row).info))
                    after = key
                cursor.close()
                if not jumped:
                    break  # the scan ran out of keys (or filled the page)
        return entries[:max_keys], len(entries) > max_keys

    # multipart uploads

    def create_upload(self, upload: Upload, key: bytes, created: datetime) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO uploads (upload_id, key, created_ms, content_type, metadata, headers)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    upload.upload_id,
                    key,
                    to_ms(created),
                    upload.content_type,
                    _dump(upload.metadata),
                    _dump(upload.headers),
                ),
            )

    def get_upload(self, upload_id: str) -> Upload | None:
        rows = self._query(
            "SELECT upload_id, key, content_type, metadata, headers FROM uploads"
            " WHERE upload_id = ?",
            (upload_id,),
        )
        if not rows:
            return None
        row = rows[0]
        return Upload(
            row[0], bytes(row[1]).decode(), row[2], json.loads(row[3]), json.loads(row[4])
        )

    def put_part(self, upload_id: str, part: PartInfo, file_name: str) -> tuple[bool, str | None]:
        """Record a part: (recorded, the file the same part number had before).

        Records nothing if the upload is gone (aborted or completed while the part streamed
        in); the caller then removes its file.
        """
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone():
                old = db.execute(
                    "SELECT file_name FROM parts WHERE upload_id = ? AND part_number = ?",
                    (upload_id, part.part_number),
                ).fetchone()
                db.execute(
                    "INSERT INTO parts (upload_id, part_number, size, etag, file_name)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (upload_id, part_number) DO UPDATE SET"
                    " size = excluded.size, etag = excluded.etag, file_name = excluded.file_name",
                    (upload_id, part.part_number, part.size, part.etag, file_name),
                )
                return True, (str(old[0]) if old else None)
            return False, None

    def list_parts(self, upload_id: str) -> list[PartFile]:
        rows = self._query(
            "SELECT part_number, size, etag, file_name FROM parts WHERE upload_id = ?"
            " ORDER BY part_number",
            (upload_id,),
        )
        return [PartFile(PartInfo(row[0], row[1], row[2]), row[3]) for row in rows]

    def delete_upload(self, upload_id: str) -> bool:
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
            return cursor.rowcount > 0

    def finish_upload(
        self,
        upload_id: str,
        key: bytes,
        data_id: str,
        info: ObjectInfo,
        part_sizes: tuple[int, ...],
    ) -> tuple[bool, str | None]:
        """Atomically turn an upload into an object: (upload was still open, old data id)."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))
            if cursor.rowcount == 0:
                return False, None
            return True, _replace(db, key, data_id, info, part_sizes)


def _replace(
    db: sqlite3.Connection,
    key: bytes,
    data_id: str,
    info: ObjectInfo,
    part_sizes: tuple[int, ...] | None,
) -> str | None:
    old = db.execute("SELECT data_id FROM objects WHERE key = ?", (key,)).fetchone()
    db.execute(
        _REPLACE_OBJECT,
        (
            key,
            data_id,
            info.size,
            info.etag,
            to_ms(info.last_modified),
            info.content_type,
            _dump(dict(info.metadata)),
            _dump(dict(info.headers)),
            None if part_sizes is None else json.dumps(list(part_sizes)),
        ),
    )
    return str(old[0]) if old else None


def _stored(row: tuple[Any, ...]) -> StoredObject:
    key, data_id, size, etag, modified_ms, content_type, metadata, headers, part_sizes = row
    info = ObjectInfo(
        key=bytes(key).decode(),
        size=size,
        etag=etag,
        last_modified=from_ms(modified_ms),
        content_type=content_type,
        metadata=json.loads(metadata),
        headers=json.loads(headers),
    )
    sizes = None if part_sizes is None else tuple(int(n) for n in json.loads(part_sizes))
    return StoredObject(info, data_id, sizes)


def _dump(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def parts_to_join(
    parts: list[PartInfo], stored: Mapping[int, PartFile], min_part_size: int
) -> list[str]:
    """The part files to concatenate, after S3's checks on a completion list."""
    if not parts:
        raise InvalidPart("a multipart upload needs at least one part")
    files: list[str] = []
    previous = 0
    for position, part in enumerate(parts, start=1):
        if part.part_number <= previous:
            raise InvalidPart("parts must be listed in ascending part-number order")
        previous = part.part_number
        found = stored.get(part.part_number)
        if found is None or not same_etag(found.part.etag, part.etag):
            raise InvalidPart(f"part {part.part_number} was not uploaded with that ETag")
        if position < len(parts) and found.part.size < min_part_size:
            raise InvalidPart(
                f"part {part.part_number} is {found.part.size} bytes; every part but the "
                f"last must be at least {min_part_size} (EntityTooSmall)"
            )
        files.append(found.file_name)
    return files


def same_etag(a: str, b: str) -> bool:
    return a.strip('"').lower() == b.strip('"').lower()
