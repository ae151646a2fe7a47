"""What Ferry's code writes is its owner's only (files 0600, directories 0700), even when the
process runs under a permissive umask (022) and no `ferry` entry point narrowed it.

The same holds for a whole `ferry` installation under `var/`, served and used:
tests/integration/test_private_var.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from db.engine import create_engine, private_sqlite_file
from ferry.config import SecurityConfig
from ferry.masterkey import load_master_key
from portability.mail import Mailer, MailSettings
from storage.files import open_private, private_dir
from storage.local import LocalStorage

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Every path under `root` (itself included) with its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_private(root: Path) -> None:
    wrong = {
        name: oct(mode)
        for name, mode in modes(root).items()
        if mode != (0o700 if (root / name).is_dir() else 0o600)
    }
    assert not wrong, f"not owner-only: {wrong}"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), MiB):
        yield data[start : start + MiB]


async def test_local_storage_files_indexes_and_directories(tmp_path: Path) -> None:
    root = tmp_path / "var" / "storage"
    storage = LocalStorage(root, min_part_size=5 * MiB)
    await storage.ping()
    await storage.create_bucket("alice-data")
    await storage.put("alice-data", "docs/a.txt", _chunks(b"hello"), size=5)
    assert (await storage.head("alice-data", "docs/a.txt")).size == 5
    upload = await storage.create_multipart("alice-data", "big.bin")
    # An open upload's directory and parts, looked at before completion.
    one = await storage.upload_part(
        "alice-data", "big.bin", upload, 1, _chunks(b"x" * 5 * MiB), size=5 * MiB
    )
    two = await storage.upload_part("alice-data", "big.bin", upload, 2, _chunks(b"y"), size=1)
    assert (root / "alice-data" / "uploads" / upload).is_dir()
    assert_private(tmp_path / "var")
    await storage.complete_multipart("alice-data", "big.bin", upload, [one, two])
    await storage.close()
    names = set(modes(root / "alice-data"))
    assert {"index.sqlite3", "data", "uploads", "tmp"} <= names
    assert any(n.startswith("data/") and n.count("/") == 2 for n in names)  # a body file
    assert_private(tmp_path / "var")


async def test_outbox_mail_is_owner_only(tmp_path: Path) -> None:
    mailer = Mailer(MailSettings(outbox=str(tmp_path / "var" / "outbox")))
    await mailer.send("alice@example.com", "subject", "text", "<p>html</p>")
    [eml] = (tmp_path / "var" / "outbox").glob("*.eml")
    assert eml.stat().st_size > 0
    assert_private(tmp_path / "var")


def test_master_key_and_its_directory(tmp_path: Path) -> None:
    load_master_key(SecurityConfig(master_key_file=str(tmp_path / "var" / "keys" / "master.key")))
    assert (tmp_path / "var" / "keys" / "master.key").stat().st_size > 0
    assert_private(tmp_path / "var")


async def test_sqlite_database_and_its_wal(tmp_path: Path) -> None:
    from sqlalchemy import text

    path = tmp_path / "var" / "ferry.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        await conn.execute(text("INSERT INTO t VALUES (1)"))
        # The -wal and -shm files exist while a connection is open: SQLite made them itself.
        assert {p.name for p in path.parent.iterdir()} >= {"ferry.db", "ferry.db-wal"}
        assert_private(tmp_path / "var")
    await engine.dispose()
    assert_private(tmp_path / "var")


def test_wider_files_left_by_an_older_version_are_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "ferry.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    private_sqlite_file(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    keys = tmp_path / "demo-keys.txt"
    keys.write_text("old\n")
    keys.chmod(0o644)
    os.close(open_private(keys, os.O_WRONLY | os.O_TRUNC))
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600


def test_private_dir_makes_every_missing_parent_0700(tmp_path: Path) -> None:
    private_dir(tmp_path / "a" / "b" / "c")
    assert modes(tmp_path / "a") == {".": 0o700, "b": 0o700, "b/c": 0o700}
    private_dir(tmp_path / "a" / "b" / "c")  # existing: nothing changes, nothing fails
