"""The local backend keeps every key and bucket name inside its root, whatever they say."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.base import MAX_KEY_BYTES, check_key
from storage.exceptions import IncompleteBody, InvalidBucketName, InvalidKey, NoSuchUpload
from storage.local import LocalStorage
from storage.validation import check_bucket_name

HOSTILE_KEYS = [
    "../x",
    "../../etc/passwd",
    "../../../../../../../../tmp/escaped",
    "/abs",
    "/etc/passwd",
    "a//b",
    "dir/",
    "dir/x",
    ".",
    "..",
    "./.",
    "a/../../b",
    "\\..\\..\\windows",
    "C:\\evil",
    "nul\x00byte",
    "~/home",
    "$HOME",
    "index.sqlite3",
    "data/00/x",
    "../index.sqlite3",
    "ünïcödé/😀",
    "+ % = & ? #",
    "k" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),
]

HOSTILE_BUCKETS = [
    "..",
    ".",
    "../outside",
    "../../etc",
    "a/b",
    "/abs",
    "ab",
    "a" * 64,
    "UPPER",
    "under_score",
    "-dash",
    "dash-",
    ".dot",
    "dot.",
    "a..b",
    "a.-b",
    "192.168.1.1",
    "xn--punycode",
    "bucket-s3alias",
    "nul\x00byte",
    "with space",
    "",
]

# Every file the backend may create under a bucket directory.
LAYOUT = re.compile(
    r"[a-z0-9.-]+/("
    r"index\.sqlite3(-wal|-shm|-journal)?"
    r"|data/[0-9a-f]{2}/[0-9a-f]{32}"
    r"|uploads/[0-9a-f]{32}/[0-9]+\.[0-9a-f]{32}"
    r")"
)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def files_under(path: Path) -> list[str]:
    return sorted(
        str(Path(dirpath, name).relative_to(path))
        for dirpath, _, names in os.walk(path)
        for name in names
    )


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A root inside a directory that must stay empty apart from it."""
    (tmp_path / "root").mkdir()
    return tmp_path


async def test_hostile_keys_stay_inside_the_root(sandbox: Path) -> None:
    storage = LocalStorage(sandbox / "root", min_part_size=1)
    try:
        await storage.create_bucket("victim")
        for number, key in enumerate(HOSTILE_KEYS):
            body = f"body {number}".encode()
            await storage.put("victim", key, chunks(body), size=len(body))
            upload = await storage.create_multipart("victim", key)
            await storage.upload_part("victim", key, upload, 1, chunks(b"p"), size=1)
            if number % 2:
                await storage.abort_multipart("victim", key, upload)
        for number, key in enumerate(HOSTILE_KEYS):
            stream = await storage.get("victim", key)
            assert b"".join([c async for c in stream.body]) == f"body {number}".encode()
        page = await storage.list("victim")
        assert sorted(o.key for o in page.objects) == sorted(HOSTILE_KEYS)
    finally:
        await storage.close()

    assert sorted(os.listdir(sandbox)) == ["root"]
    files = files_under(sandbox / "root")
    assert [f for f in files if not LAYOUT.fullmatch(f)] == []
    data_files = [f for f in files if "/data/" in f]
    assert len(data_files) == len(HOSTILE_KEYS)


@pytest.mark.parametrize("bucket", HOSTILE_BUCKETS)
async def test_hostile_bucket_names_are_refused(sandbox: Path, bucket: str) -> None:
    storage = LocalStorage(sandbox / "root")
    try:
        with pytest.raises(InvalidBucketName):
            await storage.create_bucket(bucket)
        with pytest.raises(InvalidBucketName):
            await storage.put(bucket, "k", chunks(b"x"), size=1)
        with pytest.raises(InvalidBucketName):
            await storage.list(bucket)
        with pytest.raises(InvalidBucketName):
            await storage.head(bucket, "k")
        with pytest.raises(InvalidBucketName):
            await storage.bucket_exists(bucket)
    finally:
        await storage.close()
    assert sorted(os.listdir(sandbox)) == ["root"]
    assert os.listdir(sandbox / "root") == []


@pytest.mark.parametrize("bucket", ["abc", "my.bucket-1", "a" * 63, "0-0", "127.0.0.1.example"])
def test_valid_bucket_names(bucket: str) -> None:
    assert check_bucket_name(bucket) == bucket


@pytest.mark.parametrize(
    "key",
    ["", "k" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2 + 1), "lone \ud800 surrogate"],
)
async def test_invalid_keys(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)
    storage = LocalStorage(tmp_path)
    try:
        await storage.create_bucket("bucket")
        with pytest.raises(InvalidKey):
            await storage.put("bucket", key, chunks(b"x"), size=1)
        with pytest.raises(InvalidKey):
            await storage.get("bucket", key)
        with pytest.raises(InvalidKey):
            await storage.create_multipart("bucket", key)
    finally:
        await storage.close()


@pytest.mark.parametrize("upload_id", ["../../x", "..", "/etc", "0" * 31, "g" * 32, ""])
async def test_foreign_upload_ids_are_unknown(tmp_path: Path, upload_id: str) -> None:
    storage = LocalStorage(tmp_path / "root")
    try:
        await storage.create_bucket("bucket")
        with pytest.raises(NoSuchUpload):
            await storage.upload_part("bucket", "k", upload_id, 1, chunks(b"x"), size=1)
        with pytest.raises(NoSuchUpload):
            await storage.list_parts("bucket", "k", upload_id)
        with pytest.raises(NoSuchUpload):
            await storage.abort_multipart("bucket", "k", upload_id)
    finally:
        await storage.close()
    assert os.listdir(tmp_path) == ["root"]


async def test_upload_id_belongs_to_its_key(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    try:
        await storage.create_bucket("bucket")
        upload = await storage.create_multipart("bucket", "mine")
        with pytest.raises(NoSuchUpload):
            await storage.upload_part("bucket", "other", upload, 1, chunks(b"x"), size=1)
    finally:
        await storage.close()


@pytest.mark.parametrize(("data", "size"), [(b"short", 10), (b"too long", 3)])
async def test_wrong_body_size_stores_nothing(tmp_path: Path, data: bytes, size: int) -> None:
    storage = LocalStorage(tmp_path)
    try:
        await storage.create_bucket("bucket")
        with pytest.raises(IncompleteBody):
            await storage.put("bucket", "k", chunks(data), size=size)
        assert (await storage.list("bucket")).objects == []
    finally:
        await storage.close()
    assert [f for f in files_under(tmp_path) if not f.startswith("bucket/index")] == []


async def test_concurrent_overwrites_leave_one_data_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    try:
        await storage.create_bucket("bucket")
        bodies = [f"version {n}".encode() for n in range(12)]
        await asyncio.gather(
            *(storage.put("bucket", "same", chunks(b), size=len(b)) for b in bodies)
        )
        stream = await storage.get("bucket", "same")
        assert b"".join([c async for c in stream.body]) in bodies
    finally:
        await storage.close()
    assert len([f for f in files_under(tmp_path) if "/data/" in f]) == 1


async def test_listing_jumps_over_common_prefixes(tmp_path: Path) -> None:
    """A delimiter listing costs a query per common prefix, not a row per key under it."""
    storage = LocalStorage(tmp_path)
    try:
        await storage.create_bucket("bucket")
        for folder in ("a", "b", "c"):
            for n in range(100):
                await storage.put("bucket", f"{folder}/{n:04}", chunks(b""), size=0)
        await storage.put("bucket", "top", chunks(b""), size=0)
        index = await storage._index("bucket")
        statements: list[str] = []
        index._db.set_trace_callback(statements.append)
        page = await storage.list("bucket", delimiter="/")
        index._db.set_trace_callback(None)
        assert page.common_prefixes == ["a/", "b/", "c/"]
        assert [o.key for o in page.objects] == ["top"]
        assert len([s for s in statements if s.startswith("SELECT")]) == 4
    finally:
        await storage.close()
