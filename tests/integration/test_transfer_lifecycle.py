"""Leases and takeover with an exact clock; cancel; the `ferry transfer` commands."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditLog, Bucket, PortabilityRequest, User
from ferry.cli_transfer import transfer
from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK, LOOPBACK_ENV
from tests.support.transfer_worker import load, new_transfer, resolver, run_until_final, s3_end
from transfer import TransferConfig, TransferWorker
from transfer.exceptions import LeaseLost
from transfer.store import Finished, JobStore, StoredPart

MiB = 1024 * 1024


class Clock:
    """A year ahead of the real time: the leases these tests leave in the shared database
    never lapse while the suite runs, so no other test's worker takes up their jobs. (A
    fixed date did: once the real time passed it, the next test's worker finished them.)"""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(days=365)

    def __call__(self) -> datetime:
        return self.now


async def test_a_lapsed_lease_is_taken_over_and_the_old_holder_can_no_longer_write(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    a = JobStore(db_sessions, owner="a", lease_seconds=30, clock=clock)
    b = JobStore(db_sessions, owner="b", lease_seconds=30, clock=clock)
    request_id = await new_transfer(db_sessions)
    await a.jobs.open_job(request_id)
    assert await a.jobs.claim_planning(request_id)
    assert not await b.jobs.claim_planning(request_id)
    rows = [{"key": k, "target_key": k, "target": "t", "size": 10, "etag": "e"} for k in "xyz"]
    await a.jobs.store_page(request_id, rows, "z")
    await a.jobs.store_page(request_id, rows, "z")  # a repeated page adds nothing
    await a.jobs.finish_planning(request_id)
    job = await a.jobs.job(request_id)
    assert job is not None and (job.objects_total, job.bytes_total) == (3, 30)

    held = await a.items.claim_items(request_id, 2)
    assert [i.key for i in held] == ["x", "y"]
    b_held = await b.items.claim_items(request_id, 5)
    assert [i.key for i in b_held] == ["z"]
    assert await b.items.claim_items(request_id, 5) == []

    clock.now += timedelta(seconds=20)
    status, lost = await a.heartbeat(request_id, [i.id for i in held], planning=False)
    assert status == "processing" and lost == set()
    await b.heartbeat(request_id, [i.id for i in b_held], planning=False)
    clock.now += timedelta(seconds=20)  # renewed: 10 s left, not lapsed
    assert await b.items.claim_items(request_id, 5) == []

    await b.heartbeat(request_id, [i.id for i in b_held], planning=False)
    clock.now += timedelta(seconds=21)  # "a" stopped beating: its leases ran out
    taken = await b.items.claim_items(request_id, 5)
    assert [(i.key, i.attempts) for i in taken] == [("x", 2), ("y", 2)]
    with pytest.raises(LeaseLost):
        await a.items.record_part(held[0], StoredPart(1, 10, "0" * 32, None, "etag"))
    _, lost = await a.heartbeat(request_id, [i.id for i in held], planning=False)
    assert lost == {i.id for i in held}

    uploading = await b.items.record_upload(
        taken[0],
        upload_id="upload-1",
        part_size=10,
        checksum=None,
        content_type="text/plain",
        attributes={"metadata": {}, "headers": {}},
    )
    await b.items.record_part(uploading, StoredPart(1, 10, "0" * 32, None, "etag"))
    job = await b.jobs.job(request_id)
    assert job is not None and job.bytes_done == 10
    await b.items.record_done(uploading, verified="etag", target_etag="etag")
    job = await b.jobs.job(request_id)
    assert job is not None and (job.objects_copied, job.bytes_done) == (1, 10)


async def test_a_batch_of_finished_items_records_only_those_still_held(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    clock = Clock()
    a = JobStore(db_sessions, owner="a", lease_seconds=30, clock=clock)
    b = JobStore(db_sessions, owner="b", lease_seconds=30, clock=clock)
    request_id = await new_transfer(db_sessions)
    await a.jobs.open_job(request_id)
    assert await a.jobs.claim_planning(request_id)
    rows = [{"key": k, "target_key": k, "target": "t", "size": 10, "etag": "e"} for k in "uvwxyz"]
    await a.jobs.store_page(request_id, rows, "z")
    await a.jobs.finish_planning(request_id)

    held = await a.items.claim_items(request_id, 4)
    assert [(i.key, i.attempts) for i in held] == [("u", 1), ("v", 1), ("w", 1), ("x", 1)]
    # Claimed ahead and never started: given back with the claim's attempt returned.
    await a.items.release_unstarted(held[3:])
    clock.now += timedelta(seconds=31)  # a's leases lapse; b takes them over
    taken = await b.items.claim_items(request_id, 2)
    assert [(i.key, i.attempts) for i in taken] == [("u", 2), ("v", 2)]

    # a finished u, v and w: only w is still a's to record; u and v come back as lost.
    done = [Finished(i, "done", "etag", "e") for i in held[:3]]
    lost = await a.items.record_finished(done)
    assert [i.key for i in lost] == ["u", "v"]
    job = await a.jobs.job(request_id)
    assert job is not None and (job.objects_copied, job.bytes_done) == (1, 10)
    # All held: the fast path, with the counters moved once per item.
    skipped = [Finished(i, "skipped", "skip:etag", "e") for i in taken]
    assert await b.items.record_finished(skipped) == []
    job = await b.jobs.job(request_id)
    assert job is not None and (job.objects_copied, job.objects_skipped) == (1, 2)
    rest = await b.items.claim_items(request_id, 5)
    assert [(i.key, i.attempts) for i in rest] == [("x", 1), ("y", 1), ("z", 1)]


async def test_releasing_an_item_already_done_leaves_it_done(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A late release (a retry path, a stopping worker) must not send a finished object back
    to pending, where another worker would copy it a second time."""
    clock = Clock()
    a = JobStore(db_sessions, owner="a", lease_seconds=30, clock=clock)
    request_id = await new_transfer(db_sessions)
    await a.jobs.open_job(request_id)
    assert await a.jobs.claim_planning(request_id)
    rows = [{"key": k, "target_key": k, "target": "t", "size": 10, "etag": "e"} for k in "xy"]
    await a.jobs.store_page(request_id, rows, "y")
    await a.jobs.finish_planning(request_id)
    x, y = await a.items.claim_items(request_id, 2)
    await a.items.record_done(x, verified="etag", target_etag="etag")
    await a.items.release(x, "a late retry")
    await a.items.release(y, "a real retry")
    again = await a.items.claim_items(request_id, 5)
    assert [i.key for i in again] == ["y"]


async def test_cancel_stops_the_worker_and_aborts_open_uploads(
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    database_url: str,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    source_bucket = seaweedfs.new_bucket("src")
    client = seaweedfs.client()
    client.put_object(Bucket=source_bucket, Key="slow.bin", Body=os.urandom(30 * MiB))
    for i in range(5):
        client.put_object(Bucket=source_bucket, Key=f"z/{i}.txt", Body=b"x" * 100)
    destination = seaweedfs_b.new_bucket("dst")
    finished: list[PortabilityRequest] = []

    async def on_finished(request: PortabilityRequest) -> None:
        finished.append(request)

    worker = TransferWorker(
        db_sessions,
        resolve=resolver(s3_end(seaweedfs, source_bucket), s3_end(seaweedfs_b, destination)),
        worker_id="cancel-me",
        egress=LOOPBACK,
        config=TransferConfig(
            part_size=5 * MiB,
            multipart_threshold=5 * MiB,
            bandwidth_limit=5 * MiB,  # slow: about six seconds for the big object
            heartbeat_seconds=0.2,
            lease_seconds=5,
            poll_seconds=0.2,
        ),
        on_finished=on_finished,
    )
    request_id = await new_transfer(db_sessions)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        uploads: list[Any] = []
        for _ in range(100):
            uploads = seaweedfs_b.open_uploads(destination)
            if uploads:
                break
            await asyncio.sleep(0.1)
        assert uploads, "the multipart upload never started"

        result = await asyncio.to_thread(
            CliRunner().invoke,
            transfer,
            ["cancel", str(request_id)],
            env={"FERRY_DATABASE_URL": database_url},
        )
        assert result.exit_code == 0, result.output
        for _ in range(100):
            if finished:
                break
            await asyncio.sleep(0.1)
        assert len(finished) == 1
        done = await load(db_sessions, request_id)
        assert done.status == "cancelled"
        async with db_sessions() as session:  # the service's cancel: audited, as the API's
            audited = await session.scalar(
                sa.select(AuditLog.actor).where(
                    AuditLog.action == "transfer.cancel", AuditLog.user_id == done.user_id
                )
            )
        assert audited == "admin"
        report = (done.meta or {})["report"]
        assert report["status"] == "cancelled"
        assert report["objects"]["copied"] < 6
        assert seaweedfs_b.open_uploads(destination) == []

        again = await asyncio.to_thread(
            CliRunner().invoke,
            transfer,
            ["cancel", str(request_id)],
            env={"FERRY_DATABASE_URL": database_url},
        )
        assert again.exit_code == 1 and "cancelled already" in again.output
    finally:
        stop.set()
        await running
    assert len(finished) == 1


async def test_status_and_report_commands(
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    database_url: str,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    source_bucket = seaweedfs.new_bucket("src")
    for i in range(3):
        seaweedfs.client().put_object(Bucket=source_bucket, Key=f"f{i}", Body=b"data" * i)
    destination = seaweedfs_b.new_bucket("dst")
    worker = TransferWorker(
        db_sessions,
        resolve=resolver(s3_end(seaweedfs, source_bucket), s3_end(seaweedfs_b, destination)),
        worker_id="cli",
        egress=LOOPBACK,
    )
    request_id = await new_transfer(db_sessions)
    env = {"FERRY_DATABASE_URL": database_url}

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(transfer, list(args), env=env)

    pending = await asyncio.to_thread(invoke, "status", str(request_id))
    assert pending.exit_code == 0 and "pending" in pending.output
    await run_until_final(worker, db_sessions, request_id)

    status = await asyncio.to_thread(invoke, "status", str(request_id), "--follow")
    assert status.exit_code == 0, status.output
    assert "100.0%" in status.output and "3/3 objects" in status.output
    as_json = json.loads(
        (await asyncio.to_thread(invoke, "status", str(request_id), "--json")).output
    )
    assert as_json["status"] == "completed" and as_json["progress"]["objects_done"] == 3

    report = await asyncio.to_thread(invoke, "report", str(request_id))
    assert report.exit_code == 0, report.output
    assert "3 total, 3 copied, 0 skipped, 0 failed" in report.output
    full = json.loads((await asyncio.to_thread(invoke, "report", str(request_id), "--json")).output)
    assert full["objects"]["copied"] == 3 and len(full["items"]) == 3

    missing = await asyncio.to_thread(invoke, "report", str(uuid.uuid4()))
    assert missing.exit_code == 1 and "no transfer" in missing.output
    bad = await asyncio.to_thread(invoke, "status", "not-an-id")
    assert bad.exit_code == 2


async def test_start_creates_a_request_with_the_destination_sealed(
    tmp_path: Path, database_url: str, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    email = f"start-{uuid.uuid4().hex[:8]}@example.com"
    async with db_sessions.begin() as session:
        user = User(email=email)
        session.add(user)
        await session.flush()
        session.add(
            Bucket(name=f"b-{uuid.uuid4().hex[:8]}", owner_id=user.id, backend_bucket="backend")
        )
    env = {
        "FERRY_DATABASE_URL": database_url,
        "FERRY_SECURITY_MASTER_KEY_FILE": str(tmp_path / "master.key"),
        "FERRY_STORAGE_ROOT": str(tmp_path / "storage"),
        "FERRY_TARGET_ACCESS_KEY_ID": "TARGETKEY",
        "FERRY_TARGET_SECRET_ACCESS_KEY": "target-secret-do-not-store",
    }
    # Nothing listens there: starting a transfer only resolves and checks the address.
    args = ["start", "--user", email, "--to-endpoint", "http://127.0.0.1:9"]
    args += ["--to-bucket", "new-home", "--to-prefix", "from-ferry/", "--json"]
    refused = await asyncio.to_thread(CliRunner().invoke, transfer, args, env=env)
    assert refused.exit_code == 1
    assert "destination address 127.0.0.1 is not allowed" in refused.output
    env.update(LOOPBACK_ENV)
    result = await asyncio.to_thread(CliRunner().invoke, transfer, args, env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["status"] == "pending"
    async with db_sessions() as session:
        stored = await session.scalar(
            sa.select(PortabilityRequest.transfer_destination).where(
                PortabilityRequest.id == uuid.UUID(answer["id"])
            )
        )
    assert stored and "new-home" in stored and "target-secret-do-not-store" not in stored

    no_keys = {k: v for k, v in env.items() if not k.startswith("FERRY_TARGET_")}
    refused = await asyncio.to_thread(CliRunner().invoke, transfer, args, env=no_keys)
    assert refused.exit_code == 2 and "FERRY_TARGET_ACCESS_KEY_ID" in refused.output
