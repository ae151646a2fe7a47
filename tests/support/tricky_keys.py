"""Object keys that break naive gateways and file mappings: `../x`, `/abs`, `a//b`, `dir/`
beside `dir/x`, unicode, reserved URL characters, a 1024-byte key.

Tests that need them put them where they test (the export test adds them to the demo's
bucket); the demo itself shows a newcomer a person's files, not these.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import select

from db.engine import create_engine, session_factory
from db.models import Bucket
from storage.local import LocalStorage

TRICKY_KEYS = [
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "a//b",
    "dir/",
    "dir/inside.txt",
    "share/plus+and space/caf%/é?#.txt",
    "share/q=1&r=2.txt",
    "share/unicode/日本語/ファイル.txt",
    "share/emoji/🚀.txt",
    "share/trailing-space ",
    "share/tilde~and*star.txt",
    "long/" + "k" * (1024 - len("long/")),
]


async def add_tricky_keys(database_url: str, root: Path, bucket_name: str) -> None:
    """Put every tricky key (its body names it) into a bucket of the local backend at `root`."""
    engine = create_engine(database_url)
    storage = LocalStorage(root)
    try:
        async with session_factory(engine)() as db:
            bucket = await db.scalar(select(Bucket).where(Bucket.name == bucket_name))
        assert bucket is not None, bucket_name
        for key in TRICKY_KEYS:
            data = f"tricky key {key!r}\n".encode()
            await storage.put(
                bucket.backend_bucket, bucket.backend_prefix + key, _once(data), size=len(data)
            )
    finally:
        await storage.close()
        await engine.dispose()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
