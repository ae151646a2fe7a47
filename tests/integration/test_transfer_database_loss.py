"""The worker loses its database connection while copies are in flight: nothing twice.

One PostgreSQL backend of the worker is ended with `pg_terminate_backend` at a chosen
moment: while it records a batch of finished objects (held there by a lock the test takes
on the job's row), with more single PUTs landed on the target whose answers the fault proxy
keeps back. The worker runs the job again after the error; every object must still be
written to the target exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.faultproxy import FaultProxy
from tests.support.transfer_worker import new_transfer, resolver, s3_end, wait_final
from transfer import TransferConfig, TransferWorker

SLOTS = 4
CONFIG = TransferConfig(
    object_concurrency=SLOTS,
    # The heartbeat would record finished objects too: none beats while the test moves.
    heartbeat_seconds=15,
    lease_seconds=30,
    backoff_base=0.01,
    backoff_cap=0.05,
)
BATCH_AGE = 0.6  # seconds: past the age at which the finished batch is recorded (0.5)


async def _until(what: str, done: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def test_connection_lost_while_recording_copies_nothing_twice(
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if db_sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("ends a PostgreSQL backend")
    caplog.set_level(logging.WARNING, logger="transfer")
    source = seaweedfs.new_bucket("src")
    client = seaweedfs.client()
    keys = [f"k{i:02d}" for i in range(16)]
    for key in keys:
        client.put_object(Bucket=source, Key=key, Body=os.urandom(2000))
    target = seaweedfs_b.new_bucket("dst")
    request_id = await new_transfer(db_sessions)

    async with FaultProxy(seaweedfs_b.endpoint_url) as proxy:
        hold = proxy.add("hold-answer", lambda s: s.operation == "PutObject")

        async def holding(count: int) -> bool:
            return proxy.holding == count

        async def planned() -> bool:
            async with db_sessions() as session:
                state = await session.scalar(
                    sa.text("SELECT state FROM transfer_jobs WHERE request_id = :id"),
                    {"id": request_id},
                )
            return state == "copying"

        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, source), s3_end(seaweedfs_b, target, endpoint_url=proxy.url)
            ),
            worker_id="loses-db",
            egress=LOOPBACK,
            config=CONFIG,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        try:
            await _until("the first copies are in flight", lambda: holding(SLOTS))
            await _until("the source is listed", planned)
            async with db_sessions() as locker:
                # Recording a finished batch moves the job's counters: it waits for this lock.
                await locker.execute(
                    sa.text("SELECT 1 FROM transfer_jobs WHERE request_id = :id FOR UPDATE"),
                    {"id": request_id},
                )
                me = await locker.scalar(sa.text("SELECT pg_backend_pid()"))
                proxy.let_through()  # the first copies end and join the finished batch
                await _until("the next copies are in flight", lambda: holding(SLOTS))
                await asyncio.sleep(BATCH_AGE)
                proxy.let_through(1)  # one more ends: the copy loop records the batch

                blocked: list[int] = []

                async def recording_waits() -> bool:
                    async with db_sessions() as session:
                        blocked[:] = (
                            await session.scalars(
                                sa.text(
                                    "SELECT pid FROM pg_stat_activity"
                                    " WHERE :me = ANY(pg_blocking_pids(pid))"
                                ),
                                {"me": me},
                            )
                        ).all()
                    return bool(blocked) and proxy.holding == SLOTS

                await _until("the batch is being recorded", recording_waits)
                await locker.execute(
                    sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": blocked[0]}
                )
                await locker.rollback()

            async def noticed() -> bool:
                return any("administrator command" in r.getMessage() for r in caplog.records)

            # Only once the worker has acted on the error do the held answers arrive.
            await _until("the worker notices", noticed)
            proxy.rules.remove(hold)
            proxy.let_through()
            done = await wait_final(db_sessions, request_id, timeout=60)
        finally:
            stop.set()
            proxy.let_through()
            await asyncio.wait_for(running, 30)

    assert done.status == "completed", (done.meta or {}).get("error")
    written = Counter(s.key for s in proxy.seen if s.operation == "PutObject" and s.status == 200)
    assert set(written) == set(keys)
    assert not {key: n for key, n in written.items() if n != 1}, "written more than once"
