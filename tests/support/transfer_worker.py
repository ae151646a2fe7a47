"""Transfer-test helpers and a test-only worker process.

As a process (for the kill -9 and two-worker tests)::

    python -m tests.support.transfer_worker --database-url URL --spec spec.json \
        --worker-id w1 [--config '{"part_size": 5242880}']

runs a TransferWorker until SIGTERM; `spec.json` names the source and destination of every
transfer request (`resolve` reads it), as `spec_for()` writes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.models import PortabilityRequest, User
from db.types import utcnow
from storage.base import Storage
from storage.local import LocalStorage
from storage.s3 import S3Storage
from tests.support.egress import LOOPBACK
from transfer import Destination, Source, TransferConfig, TransferWorker

FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class End:
    """One side of a transfer as JSON: an S3 endpoint (or a local directory) and a bucket."""

    bucket: str
    prefix: str = ""
    endpoint_url: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    region: str = "us-east-1"
    local_root: str = ""
    checksum: str = "auto"

    def storage(self) -> Storage:
        if self.local_root:
            return LocalStorage(Path(self.local_root))
        return S3Storage(self.endpoint_url, self.region, self.access_key_id, self.secret_access_key)

    def destination(self) -> Destination:
        return Destination(
            endpoint_url=self.endpoint_url,
            region=self.region,
            bucket=self.bucket,
            prefix=self.prefix,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            checksum=self.checksum,
        )


def s3_end(server: Any, bucket: str, prefix: str = "", **kw: Any) -> End:
    """An End for a tests.fixtures.servers.S3Server (or any object with its attributes)."""
    return End(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=kw.pop("endpoint_url", server.endpoint_url),
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        region=server.region,
        **kw,
    )


def resolver(source: End, destination: End) -> Any:
    async def resolve(_request: PortabilityRequest) -> tuple[Source, Destination]:
        return (
            Source(source.storage(), source.bucket, source.prefix, owned=True),
            destination.destination(),
        )

    return resolve


async def new_transfer(
    sessions: async_sessionmaker[AsyncSession], *, options: dict[str, Any] | None = None
) -> uuid.UUID:
    """A user and a pending transfer request, as the API would store them."""
    async with sessions.begin() as session:
        user = User(email=f"t-{uuid.uuid4().hex[:10]}@example.com")
        session.add(user)
        await session.flush()
        request = PortabilityRequest(
            id=uuid.uuid4(),
            user_id=user.id,
            request_type="transfer",
            status="pending",
            transfer_destination="sealed-elsewhere",
            created_at=utcnow(),
            meta={"options": {"source": {"bucket": "b", "prefix": ""}, **(options or {})}},
        )
        session.add(request)
    return request.id


async def load(
    sessions: async_sessionmaker[AsyncSession], request_id: uuid.UUID
) -> PortabilityRequest:
    async with sessions() as session:
        request = await session.get(PortabilityRequest, request_id)
        assert request is not None
        return request


async def run_until_final(
    worker: TransferWorker,
    sessions: async_sessionmaker[AsyncSession],
    request_id: uuid.UUID,
    timeout: float = 300,  # noqa: ASYNC109 - a deadline for a polling loop
) -> PortabilityRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await worker.run_once()
        request = await load(sessions, request_id)
        if request.status in FINAL:
            return request
        await asyncio.sleep(0.05)
    raise AssertionError(f"transfer {request_id} did not finish within {timeout}s")


async def wait_final(
    sessions: async_sessionmaker[AsyncSession],
    request_id: uuid.UUID,
    timeout: float = 300,  # noqa: ASYNC109
) -> PortabilityRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = await load(sessions, request_id)
        if request.status in FINAL:
            return request
        await asyncio.sleep(0.2)
    raise AssertionError(f"transfer {request_id} did not finish within {timeout}s")


def write_spec(path: Path, source: End, destination: End) -> Path:
    path.write_text(json.dumps({"source": asdict(source), "destination": asdict(destination)}))
    return path


async def _main(args: argparse.Namespace) -> None:
    spec = json.loads(Path(args.spec).read_text())  # noqa: ASYNC240 - once, at start
    source, destination = End(**spec["source"]), End(**spec["destination"])
    engine = create_engine(args.database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    worker = TransferWorker(
        session_factory(engine),
        resolve=resolver(source, destination),
        worker_id=args.worker_id,
        egress=LOOPBACK,
        config=TransferConfig(**json.loads(args.config)),
    )
    try:
        await worker.run(stop)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--config", default="{}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("transfer").setLevel(logging.DEBUG)
    asyncio.run(_main(parser.parse_args()))
