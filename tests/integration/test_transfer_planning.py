"""Planning and copying side by side: the first page listed is copied while the rest is listed.

In a module of its own: its database holds no other test's pending transfer, which this
test's worker would take up first (with the same source and target) and copy for it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.servers import S3Server
from tests.support.egress import LOOPBACK
from tests.support.faultproxy import FaultProxy
from tests.support.transfer_worker import new_transfer, resolver, run_until_final, s3_end
from transfer import TransferConfig, TransferWorker


async def test_copying_starts_with_the_first_page_listed_not_after_the_last(
    seaweedfs: S3Server,
    seaweedfs_b: S3Server,
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Listed two keys a page, 120 objects take 60 listing requests: the copies run beside
    # them (a proxy in front of the source sees the order), and the job still ends whole.
    source_bucket = seaweedfs.new_bucket("src")
    client = seaweedfs.client()
    for i in range(120):
        client.put_object(Bucket=source_bucket, Key=f"k/{i:03d}", Body=b"%d" % i)
    destination = seaweedfs_b.new_bucket("dst")
    async with FaultProxy(seaweedfs.endpoint_url) as proxy:
        worker = TransferWorker(
            db_sessions,
            resolve=resolver(
                s3_end(seaweedfs, source_bucket, endpoint_url=proxy.url),
                s3_end(seaweedfs_b, destination),
            ),
            worker_id="overlap",
            egress=LOOPBACK,
            config=TransferConfig(list_page_size=2),
        )
        done = await run_until_final(worker, db_sessions, await new_transfer(db_sessions))

    assert done.status == "completed", done.meta
    assert (done.meta or {})["report"]["objects"]["copied"] == 120
    operations = [s.operation for s in proxy.seen]
    last_list = len(operations) - 1 - operations[::-1].index("List")
    assert operations.count("List") >= 60
    assert "GetObject" in operations[:last_list]
    listed = seaweedfs_b.client().list_objects_v2(Bucket=destination, MaxKeys=1000)
    assert listed["KeyCount"] == 120
