"""The data a pull test serves and the tools that pull it: the scoped prefix with tricky,
long, edge and outside keys and a 100 MiB object, the `Pull` installation a test pulls from,
and the command-line clients found on this machine.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from db.urls import sync_url
from storage.local import LocalStorage
from tests.support.ferry import Ferry

MiB = 1024 * 1024
BIN = Path(sys.executable).parent
PREFIX = "pull/"
LONG_KEY = "pull/long/" + "/".join(["d" * 200] * 4) + "/"
LONG_KEY += "e" * (1024 - len(LONG_KEY.encode()))
TRICKY = [
    "pull/sp ace.txt",
    "pull/unicodé/日本語.txt",
    "pull/plus+sign.txt",
    "pull/100%.txt",
    "pull/a=b&c.txt",
    "pull/q?x#y.txt",
    "pull/tilde~star*.txt",
    "pull/small/ünï.txt",
    LONG_KEY,
]
OUTSIDE = ["secret/s.txt", "pullx/sibling.txt", "pul"]
# Keys with empty path segments and a folder marker: SeaweedFS cannot store them (it collapses
# "//" and keeps no body for "dir/"), so they are served from the local backend only.
EDGE = {
    "edge/a//b.txt": b"double slash",
    "edge//lead.txt": b"empty first segment",
    "edge/dir/": b"",
    "edge/dir/in.txt": b"inside a folder with a marker",
}
BIG = "pull/big/100MiB.bin"


def tool(name: str, path: str | None = None) -> str:
    found = path if path and Path(path).exists() else shutil.which(name, path=str(BIN))
    found = found or shutil.which(name)
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is not installed (CI installs it)")
        pytest.skip(f"{name} is not installed")
    return found


def dataset() -> dict[str, bytes]:
    rng = random.Random(7)
    files = {f"pull/files/{i:03d}.dat": rng.randbytes(rng.randint(0, 4000)) for i in range(300)}
    files.update({f"pull/small/{i}.txt": f"small {i}\n".encode() for i in range(8)})
    files.update({k: f"tricky {k!r}\n".encode() for k in TRICKY})
    files.update({k: b"must not leave" for k in OUTSIDE})
    return files


@dataclass
class Pull:
    ferry: Ferry
    files: dict[str, bytes]
    big_sha256: str
    token_cred: dict[str, Any]
    tokenless_cred: dict[str, Any]
    backend: str
    api_key: str

    @property
    def bucket(self) -> str:
        # Both backends' installations share the module's database: one bucket name each.
        return f"alice-{self.backend}"

    def env(self, cred: dict[str, Any], home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            HOME=str(home),
            AWS_ACCESS_KEY_ID=cred["access_key_id"],
            AWS_SECRET_ACCESS_KEY=cred["secret_access_key"],
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
            AWS_CONFIG_FILE=str(home / "aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "aws-credentials"),
        )
        if cred["session_token"]:
            env["AWS_SESSION_TOKEN"] = cred["session_token"]
        return env

    def expected(self, prefix: str) -> dict[str, bytes]:
        return {k[len(prefix) :]: v for k, v in self.files.items() if k.startswith(prefix)}

    def check_tree(self, out: Path, prefix: str, *, big: bool) -> None:
        """The downloaded tree holds exactly the prefix's objects, byte for byte."""
        got = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}
        want = self.expected(prefix)
        if big:
            assert BIG.startswith(prefix)
            big_rel = BIG[len(prefix) :]
            assert hashlib.sha256(got.pop(big_rel).read_bytes()).hexdigest() == self.big_sha256
        assert sorted(got) == sorted(want)
        for rel, path in got.items():
            assert path.read_bytes() == want[rel], rel


async def seed_local(root: Path, bucket: str, files: dict[str, bytes], big: Path) -> None:
    storage = LocalStorage(root)
    await storage.create_bucket(bucket)

    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def chunks() -> AsyncIterator[bytes]:
        with big.open("rb") as f:
            while chunk := f.read(MiB):
                yield chunk

    for key, data in files.items():
        await storage.put(bucket, key, once(data), size=len(data))
    await storage.put(bucket, BIG, chunks(), size=100 * MiB)
    await storage.close()


def run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, (
        f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


def ranged_gets_of(pull: Pull, key: str, access_key_id: str) -> int:
    engine = create_engine(sync_url(pull.ferry.env["FERRY_DATABASE_URL"]))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM audit_logs a JOIN credentials c "
                        "ON c.id = a.credential_id WHERE a.key = :key AND a.range IS NOT NULL "
                        "AND a.status = 206 AND c.access_key_id = :akid"
                    ),
                    {"key": key, "akid": access_key_id},
                ).scalar_one()
            )
    finally:
        engine.dispose()
