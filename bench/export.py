"""Export benchmark: personal-data JSON at scale, archives against the system's tools.

    .venv/bin/python bench/export.py [--database-url URL] [--big-mib 1024] [--audit-rows 1000000]

Prints one table. Each measured export runs in a child process so its peak RSS is its own.
Needs PostgreSQL (default postgresql+psycopg://root@127.0.0.1:5432/test: a scratch database is
created next to it and dropped afterwards), `tar`, `gzip` and `zip`. Data goes to a temp
directory: the same files once as a directory tree (for the system tools) and once in the
local storage backend (for Ferry); Ferry's archive is uploaded into that backend.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]


def _fill_rows(url: str, audit_rows: int, usage_rows: int) -> uuid.UUID:
    """One user with many rows, written with COPY (the point is reading them back)."""
    import psycopg

    from db.urls import parse_url

    user_id = uuid.uuid4()
    u = parse_url(url)
    with psycopg.connect(
        host=u.host, port=u.port or 5432, user=u.username, dbname=u.database
    ) as conn:
        conn.execute(
            "INSERT INTO users (id, email, name) VALUES (%s, 'bench@example.com', 'Bench')",
            (user_id,),
        )
        base = datetime(2025, 1, 1, tzinfo=UTC)
        with conn.cursor().copy(
            "COPY audit_logs (created_at, user_id, actor, action, bucket, key, status, bytes,"
            " duration_ms, client_addr, user_agent) FROM STDIN"
        ) as copy:
            for i in range(audit_rows):
                copy.write_row(
                    (
                        base + timedelta(seconds=i * 30),
                        user_id,
                        "gateway",
                        "GetObject",
                        "bench-data",
                        f"photos/{i % 5000:05d}.jpg",
                        200,
                        i % 100_000,
                        i % 120,
                        f"198.51.100.{i % 254 + 1}",
                        "aws-cli/2.15.0 Python/3.11",
                    )
                )
        with conn.cursor().copy(
            "COPY usage_records (id, user_id, bucket, period_start, period_end, storage_bytes,"
            " egress_bytes, ingress_bytes, requests) FROM STDIN"
        ) as copy:
            for i in range(usage_rows):
                start = base + timedelta(hours=i)
                copy.write_row(
                    (
                        uuid.uuid4(),
                        user_id,
                        "bench-data",
                        start,
                        start + timedelta(hours=1),
                        i * 1000,
                        i,
                        i,
                        i % 1000,
                    )
                )
        conn.commit()
    return user_id


def _child(args: list[str]) -> tuple[float, float, str]:
    """Run this script in a child; returns (seconds, peak RSS MiB, its output)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr}")
    # The child reports its own peak (RUSAGE_CHILDREN would be the max over all children).
    peak = float(result.stdout.strip().splitlines()[-1].split()[-1])
    return took, peak, result.stdout


def _self_peak() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# children


async def _child_personal(url: str, root: str, user_id: str) -> None:
    from db.engine import create_engine, session_factory
    from portability.exports.personal import personal_data
    from portability.exports.sink import StorageSink
    from storage.local import LocalStorage

    engine = create_engine(url)
    storage = LocalStorage(Path(root))
    await storage.create_bucket("ferry-exports")
    sink = StorageSink(storage, "ferry-exports", f"bench/{uuid.uuid4()}.json", chunk_size=8 * MiB)
    started = time.monotonic()
    async for chunk in personal_data(
        session_factory(engine), uuid.UUID(user_id), now=datetime.now(UTC)
    ):
        await sink.write(chunk)
    info = await sink.close()
    print(f"bytes {info.size} seconds {time.monotonic() - started:.2f}")
    await engine.dispose()
    await storage.close()
    print(f"peak_rss_mib {_self_peak():.1f}")


def _discarding(root: Path) -> object:
    """The local backend, except that writes to ferry-exports are hashed and dropped."""
    import hashlib

    from storage.base import Body, Checksum, ObjectInfo, PartInfo
    from storage.local import LocalStorage

    class Discard(LocalStorage):
        async def create_multipart(self, bucket: str, key: str, **kw: object) -> str:
            if bucket != "ferry-exports":
                return await super().create_multipart(bucket, key, **kw)  # type: ignore[arg-type]
            return "discard"

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
            if upload_id != "discard":
                return await super().upload_part(
                    bucket,
                    key,
                    upload_id,
                    part_number,
                    body,
                    size=size,
                    content_md5=content_md5,
                    checksum=checksum,
                )
            md5 = hashlib.md5()  # noqa: S324 - what an S3 server computes for the ETag
            if isinstance(body, bytes | bytearray):
                md5.update(body)
            else:
                async for chunk in body:
                    # In a thread: a real server hashes in its own process, not on Ferry's loop.
                    await asyncio.to_thread(md5.update, chunk)
            return PartInfo(part_number, size, md5.hexdigest())

        async def complete_multipart(
            self,
            bucket: str,
            key: str,
            upload_id: str,
            parts: list[PartInfo],
            *,
            checksum_algorithm: str | None = None,
        ) -> ObjectInfo:
            if upload_id != "discard":
                return await super().complete_multipart(
                    bucket, key, upload_id, parts, checksum_algorithm=checksum_algorithm
                )
            size = sum(p.size for p in parts)
            return ObjectInfo(key, size, "x", datetime.now(UTC))

    return Discard(root)


async def _child_archive(root: str, fmt: str, discard: str = "") -> None:
    from db.models import Bucket
    from portability.exports.archive import ArchiveBuilder
    from portability.exports.listing import iter_objects
    from portability.exports.settings import ExportSettings
    from storage.local import LocalStorage

    storage = _discarding(Path(root)) if discard else LocalStorage(Path(root))
    assert isinstance(storage, LocalStorage)
    await storage.create_bucket("ferry-exports")
    owner = uuid.uuid4()
    source = Bucket(
        id=uuid.uuid4(),
        name="bench-data",
        owner_id=owner,
        backend_bucket="bench",
        backend_prefix="",
    )
    target = Bucket(
        id=uuid.uuid4(),
        name="ferry-export-x",
        owner_id=owner,
        backend_bucket="ferry-exports",
        backend_prefix="bench/",
    )

    async def progress(done: int, objects: int) -> None:
        return None

    builder = ArchiveBuilder(
        storage,
        settings=ExportSettings(part_size=64 * 1024 * MiB),
        export_bucket=target,
        request_id=uuid.uuid4(),
        archive_format=fmt,
        now=datetime.now(UTC),
        progress=progress,
    )
    started = time.monotonic()
    result = await builder.build(personal=None, sources=iter_objects(storage, [source]))
    took = time.monotonic() - started
    size = sum(p.size for p in result.parts)
    print(f"input {result.bytes} output {size} seconds {took:.2f}")
    await storage.close()
    print(f"peak_rss_mib {_self_peak():.1f}")


# data


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _make_files(tree: Path, root: Path, big_mib: int, small: int, jpegs: int) -> int:
    from storage.local import LocalStorage

    storage = LocalStorage(root)
    await storage.create_bucket("bench")
    rng = random.Random(1)
    total = 0
    words = [rng.randbytes(4).hex() for _ in range(2000)]

    async def put(key: str, data: bytes, ctype: str) -> None:
        nonlocal total
        path = tree / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        await storage.put("bench", key, _once(data), size=len(data), content_type=ctype)
        total += len(data)

    for i in range(small):
        text = " ".join(rng.choices(words, k=rng.randint(50, 2000))).encode()
        await put(f"docs/{i // 500:02d}/note-{i:05d}.txt", text, "text/plain")
    for i in range(jpegs):
        await put(
            f"photos/IMG_{i:04d}.jpg", b"\xff\xd8\xff\xe0" + os.urandom(200_000), "image/jpeg"
        )

    # The big object: half text-like (compressible), half random, written in 8 MiB pieces.
    path = tree / "big" / "backup.bin"
    path.parent.mkdir(parents=True, exist_ok=True)

    async def chunks() -> AsyncIterator[bytes]:
        line = (" ".join(words[:200]) + "\n").encode()
        with path.open("wb") as f:
            for n in range(big_mib // 8):
                piece = (
                    (line * (8 * MiB // len(line) + 1))[: 8 * MiB] if n % 2 else os.urandom(8 * MiB)
                )
                f.write(piece)
                yield piece

    await storage.put("bench", "big/backup.bin", chunks(), size=big_mib // 8 * 8 * MiB)
    total += big_mib // 8 * 8 * MiB
    await storage.close()
    return total


def _system(tree: Path, out: Path) -> tuple[float, float, int, int]:
    started = time.monotonic()
    with (out / "sys.tar.gz").open("wb") as f:
        tar = subprocess.Popen(["tar", "-cf", "-", "-C", str(tree), "."], stdout=subprocess.PIPE)
        subprocess.run(["gzip", "-1"], stdin=tar.stdout, stdout=f, check=True)
        tar.wait()
    tar_s = time.monotonic() - started
    started = time.monotonic()
    subprocess.run(["zip", "-q", "-1", "-r", str(out / "sys.zip"), "."], cwd=tree, check=True)
    zip_s = time.monotonic() - started
    return tar_s, zip_s, (out / "sys.tar.gz").stat().st_size, (out / "sys.zip").stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "FERRY_TEST_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--audit-rows", type=int, default=1_000_000)
    parser.add_argument("--usage-rows", type=int, default=100_000)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--jpegs", type=int, default=500)
    args = parser.parse_args()
    # The peers are the system's own tools: say which one is missing rather than fail midway.
    for tool in ("tar", "gzip", "zip"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/export.py compares against `{tool}`: apt-get install {tool}")

    from db import migrate
    from tests.fixtures.database import fresh_postgres_database

    rows: list[tuple[str, str, str, str]] = []
    scratch = contextlib.ExitStack()
    url = scratch.enter_context(fresh_postgres_database(args.database_url))
    work = Path(tempfile.mkdtemp(prefix="ferry-bench-"))
    try:
        migrate.upgrade(url)
        t0 = time.monotonic()
        user_id = _fill_rows(url, args.audit_rows, args.usage_rows)
        print(
            f"filled {args.audit_rows} audit + {args.usage_rows} usage rows in "
            f"{time.monotonic() - t0:.1f}s",
            file=sys.stderr,
        )
        took, peak, out = _child(["--child-personal", url, str(work / "storage"), str(user_id)])
        size = int(out.split()[1])
        rows.append(
            (
                f"personal data ({args.audit_rows:,} audit, {args.usage_rows:,} usage rows)",
                f"{took:.1f} s ({size / MiB:.0f} MiB JSON)",
                f"{peak:.0f} MiB",
                "≤ 60 s, ≤ 200 MiB",
            )
        )
        tree = work / "tree"
        total = asyncio.run(
            _make_files(tree, work / "storage", args.big_mib, args.small, args.jpegs)
        )
        tar_s, zip_s, tar_size, zip_size = _system(tree, work)

        def rate(seconds: float) -> str:
            return f"{total / MiB / seconds:.0f} MiB/s"

        rows.append(
            (
                f"tar -cf - \\| gzip -1 ({total / MiB:.0f} MiB)",
                rate(tar_s),
                f"out {tar_size / MiB:.0f} MiB",
                "",
            )
        )
        rows.append(
            (f"zip -1 -r ({total / MiB:.0f} MiB)", rate(zip_s), f"out {zip_size / MiB:.0f} MiB", "")
        )
        for fmt, system_s, discard in (
            ("tar.gz", tar_s, ""),
            ("zip", zip_s, ""),
            ("tar.gz", tar_s, "discard"),
            ("zip", zip_s, "discard"),
        ):
            args_ = ["--child-archive", str(work / "storage"), fmt, discard]
            took, peak, out = _child(args_)
            fields = out.split()
            seconds = float(fields[fields.index("seconds") + 1])
            output = int(fields[fields.index("output") + 1])
            rows.append(
                (
                    f"ferry {fmt} + sha256 ({total / MiB:.0f} MiB)"
                    + (", output hashed and dropped" if discard else ", into local storage"),
                    f"{rate(seconds)} ({system_s / seconds:.1f}x system), "
                    f"out {output / MiB:.0f} MiB",
                    f"{peak:.0f} MiB",
                    "≥ 2x system, ≤ 200 MiB",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        scratch.close()

    buf = io.StringIO()
    buf.write("| what | wall / throughput | peak RSS | target |\n|---|---|---|---|\n")
    for row in rows:
        buf.write("| " + " | ".join(row) + " |\n")
    print(buf.getvalue())


if __name__ == "__main__":
    # Run as a script, bench/ heads sys.path, and bench/copy.py would shadow the standard
    # library's copy module (which SQLAlchemy imports): the repository root takes its place.
    if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
        sys.path[0] = str(ROOT)
    else:
        sys.path.insert(0, str(ROOT))
    if len(sys.argv) > 1 and sys.argv[1] == "--child-personal":
        asyncio.run(_child_personal(*sys.argv[2:5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-archive":
        asyncio.run(_child_archive(*sys.argv[2:5]))
    else:
        main()
