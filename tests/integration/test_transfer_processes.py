"""Worker processes: kill -9 in the middle of a copy and resume; two workers share one job.

The workers are real processes (tests/support/transfer_worker.py); the target sits behind
the fault proxy, which counts every request, so "nothing was sent twice" is observed on the
wire rather than taken from the engine's own word.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.models import TransferItem, TransferPart
from tests.fixtures.servers import S3Server
from tests.support.faultproxy import FaultProxy
from tests.support.transfer_worker import new_transfer, s3_end, wait_final, write_spec
from transfer.multipart import PROBE_PART

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


class Workers:
    def __init__(self, tmp_path: Path, database_url: str, spec: Path, config: dict[str, object]):
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.spec = spec
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker_id: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{worker_id}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.transfer_worker",
                "--database-url",
                self.database_url,
                "--spec",
                str(self.spec),
                "--worker-id",
                worker_id,
                "--config",
                json.dumps(self.config),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes[worker_id] = process
        return process

    def log(self, worker_id: str) -> str:
        return (self.tmp_path / f"{worker_id}.log").read_text(errors="replace")[-5000:]

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers_factory(tmp_path: Path) -> Iterator[list[Workers]]:
    made: list[Workers] = []
    yield made
    for workers in made:
        workers.stop_all()


def _random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MiB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def _fill_small(server: S3Server, bucket: str, count: int, prefix: str) -> dict[str, str]:
    client = server.client()
    bodies = {f"{prefix}{i:03d}.txt": os.urandom(100 + i * 7) for i in range(count)}

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=bodies[key])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, bodies))
    return {key: hashlib.sha256(body).hexdigest() for key, body in bodies.items()}


def _sha_of(client: Any, bucket: str, key: str) -> str:
    digest = hashlib.sha256()
    answer = client.get_object(Bucket=bucket, Key=key)
    for chunk in answer["Body"].iter_chunks(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


async def _scalar(sessions: async_sessionmaker[AsyncSession], query: sa.Select[tuple[int]]) -> int:
    async with sessions() as session:
        return int(await session.scalar(query) or 0)


async def test_kill_9_in_the_middle_resumes_without_resending_finished_parts(
    tmp_path: Path,
    database_url: str,
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    workers_factory: list[Workers],
) -> None:
    source_bucket = seaweedfs.new_bucket("src")
    huge = tmp_path / "huge.bin"
    huge_sha = _random_file(huge, 300 * MiB)
    seaweedfs.client().upload_file(str(huge), source_bucket, "huge.bin")
    huge.unlink()
    small = _fill_small(seaweedfs, source_bucket, 200, "small/")
    destination = seaweedfs_b.new_bucket("dst")

    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with FaultProxy(seaweedfs_b.endpoint_url) as proxy:
            spec = write_spec(
                tmp_path / "spec.json",
                s3_end(seaweedfs, source_bucket),
                s3_end(seaweedfs_b, destination, endpoint_url=proxy.url),
            )
            workers = Workers(
                tmp_path,
                database_url,
                spec,
                {
                    "part_size": 8 * MiB,
                    "multipart_threshold": 8 * MiB,
                    "part_concurrency": 4,
                    "object_concurrency": 4,
                    "lease_seconds": 4,
                    "heartbeat_seconds": 1,
                    "poll_seconds": 0.5,
                    "bandwidth_limit": 60 * MiB,  # slow enough to be caught in the middle
                },
            )
            workers_factory.append(workers)
            request_id = await new_transfer(sessions)
            first = workers.start("first")

            huge_parts = (
                sa.select(sa.func.count())
                .select_from(TransferPart)
                .join(TransferItem, TransferItem.id == TransferPart.item_id)
                .where(TransferItem.request_id == request_id, TransferItem.key == "huge.bin")
            )
            deadline = time.monotonic() + 120
            while await _scalar(sessions, huge_parts) < 10:
                assert first.poll() is None, workers.log("first")
                assert time.monotonic() < deadline, workers.log("first")
                await asyncio.sleep(0.1)
            first.kill()  # SIGKILL: no cleanup, leases left to run out
            first.wait()
            await asyncio.sleep(0.3)  # let the proxy finish the requests in flight
            killed_at = len(proxy.seen)

            async with sessions() as session:
                recorded = set(
                    (
                        await session.scalars(
                            sa.select(TransferPart.part_number)
                            .join(TransferItem, TransferItem.id == TransferPart.item_id)
                            .where(
                                TransferItem.request_id == request_id,
                                TransferItem.key == "huge.bin",
                            )
                        )
                    ).all()
                )
                finished_small = set(
                    (
                        await session.scalars(
                            sa.select(TransferItem.key).where(
                                TransferItem.request_id == request_id,
                                TransferItem.state == "done",
                                TransferItem.key.like("small/%"),
                            )
                        )
                    ).all()
                )
                upload_ids = set(
                    (
                        await session.scalars(
                            sa.select(TransferItem.upload_id).where(
                                TransferItem.request_id == request_id,
                                TransferItem.upload_id.is_not(None),
                            )
                        )
                    ).all()
                )
            assert len(recorded) >= 10
            assert len(recorded) < 38  # killed in the middle: 300 MiB is 38 parts of 8 MiB

            workers.start("second")
            done = await wait_final(sessions, request_id, timeout=300)
            assert done.status == "completed", workers.log("second")

        after = proxy.seen[killed_at:]
        resent = sorted(
            s.part_number
            for s in after
            if s.operation == "UploadPart" and s.key == "huge.bin" and s.part_number in recorded
        )
        assert resent == [], f"parts {resent} were uploaded again"
        # Each worker asks the target whether it checks part checksums (see
        # MultipartCopier._probe): that part 10,000 is never part of the object.
        resumed = {
            s.part_number
            for s in after
            if s.operation == "UploadPart" and s.part_number != PROBE_PART
        }
        assert resumed == set(range(1, 39)) - recorded or resumed <= set(range(1, 39)) - recorded
        assert len(resumed) + len(recorded) == 38
        assert not [s for s in after if s.operation == "CreateMultipartUpload"]  # resumed
        assert any(s.operation == "ListParts" for s in after)
        again = [s.key for s in after if s.operation == "PutObject" and s.key in finished_small]
        assert again == []

        report = (done.meta or {})["report"]
        assert report["objects"]["copied"] + report["objects"]["skipped"] == 201
        assert report["failures"] == []
        reader = seaweedfs_b.client()
        assert _sha_of(reader, destination, "huge.bin") == huge_sha
        for key, digest in small.items():
            assert _sha_of(reader, destination, key) == digest
        assert seaweedfs_b.open_uploads(destination) == [], upload_ids
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_workers_on_postgres_share_one_job_and_copy_nothing_twice(
    tmp_path: Path,
    postgres_url: str,
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    workers_factory: list[Workers],
) -> None:
    source_bucket = seaweedfs.new_bucket("src")
    small = _fill_small(seaweedfs, source_bucket, 150, "many/")
    big = {f"big/{i}.bin": os.urandom(12 * MiB) for i in range(3)}
    for key, body in big.items():
        seaweedfs.client().put_object(Bucket=source_bucket, Key=key, Body=body)
        small[key] = hashlib.sha256(body).hexdigest()
    destination = seaweedfs_b.new_bucket("dst")

    engine = create_engine(postgres_url)
    sessions = session_factory(engine)
    try:
        async with FaultProxy(seaweedfs_b.endpoint_url) as proxy:
            spec = write_spec(
                tmp_path / "spec.json",
                s3_end(seaweedfs, source_bucket),
                s3_end(seaweedfs_b, destination, endpoint_url=proxy.url),
            )
            workers = Workers(
                tmp_path,
                postgres_url,
                spec,
                {
                    "part_size": 5 * MiB,
                    "multipart_threshold": 5 * MiB,
                    "object_concurrency": 4,
                    "list_page_size": 20,
                    "lease_seconds": 10,
                    "heartbeat_seconds": 1,
                    "poll_seconds": 0.2,
                },
            )
            workers_factory.append(workers)
            request_id = await new_transfer(sessions)
            workers.start("alpha")
            workers.start("beta")
            done = await wait_final(sessions, request_id, timeout=300)
            assert done.status == "completed", workers.log("alpha") + workers.log("beta")

        async with sessions() as session:
            owners = dict(
                (
                    await session.execute(
                        sa.select(TransferItem.lease_owner, sa.func.count())
                        .where(TransferItem.request_id == request_id)
                        .group_by(TransferItem.lease_owner)
                    )
                ).all()
            )
        assert set(owners) == {"alpha", "beta"}, owners
        assert sum(owners.values()) == len(small)

        puts = [s.key for s in proxy.seen if s.operation == "PutObject" and s.status == 200]
        assert len(puts) == len(set(puts)) == 150
        parts = [
            (s.key, s.part_number)
            for s in proxy.seen
            if s.operation == "UploadPart" and s.status == 200
        ]
        assert len(parts) == len(set(parts)) == 3 * 3
        creates = [s.key for s in proxy.seen if s.operation == "CreateMultipartUpload"]
        assert sorted(creates) == sorted(big)
        reader = seaweedfs_b.client()
        for key, digest in small.items():
            assert _sha_of(reader, destination, key) == digest
    finally:
        await engine.dispose()
