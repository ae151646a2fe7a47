"""`ferry demo`: an admin and two users with buckets, files and a year of account history.

alice's bucket looks like a person's files: photos by year, documents and spreadsheets, and
one 50 MiB video from her phone's camera, so a first `make run` has something real to pull,
push and export. Her history holds one finished export and one finished transfer
(demo_history.py), so the overview is not empty on first sight. Keys that break naive
gateways and file mappings (`../x`, `/abs`, `a//b`, a 1024-byte key) belong in the tests
(tests/support/tricky_keys.py), not in what a newcomer sees.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from db.models import AuditLog, BillingRecord, Bucket, UsageRecord, User
from ferry.config import Config
from ferry.demo_history import finished_export, finished_transfer
from ferry.runtime import open_runtime
from ferry.worker import export_settings
from portability.accounts import AccountError, create_user
from portability.buckets import create_bucket
from storage.base import Storage
from storage.files import open_private, private_dir

MiB = 1024 * 1024
BIG_OBJECT_SIZE = 50 * MiB


def _blob(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(storage: Storage, bucket: Bucket, key: str, data: bytes, ctype: str) -> None:
    await storage.put(
        bucket.backend_bucket,
        bucket.backend_prefix + key,
        _once(data),
        size=len(data),
        content_type=ctype,
        metadata={"origin": "ferry-demo"},
    )


async def _put_big(storage: Storage, bucket: Bucket, key: str, size: int) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        left = size
        while left:
            n = min(left, MiB)
            yield os.urandom(n)
            left -= n

    await storage.put(
        bucket.backend_bucket,
        bucket.backend_prefix + key,
        chunks(),
        size=size,
        content_type="application/octet-stream",
    )


def _files(rng: random.Random, owner: str, count: int) -> list[tuple[str, bytes, str]]:
    files = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            files.append(
                (
                    f"photos/{2020 + i % 5}/IMG_{i:04d}.jpg",
                    _blob(rng, rng.randint(1, 64) * 1024),
                    "image/jpeg",
                )
            )
        elif kind == 1:
            text = f"{owner} notes {i}\n" * rng.randint(1, 200)
            files.append((f"docs/notes-{i:04d}.txt", text.encode(), "text/plain"))
        else:
            files.append(
                (
                    f"docs/spreadsheets/budget-{i:04d}.csv",
                    "\n".join(
                        f"{j},{rng.random():.6f}" for j in range(rng.randint(1, 300))
                    ).encode(),
                    "text/csv",
                )
            )
    return files


async def create_demo(
    config: Config, *, keys_file: str | None, echo: Callable[[str], object]
) -> dict[str, str]:
    """Create the demo data; returns {email: api key}. Refuses to run twice."""
    rng = random.Random(20261126)  # same files every time: reproducible demos and benchmarks
    keys: dict[str, str] = {}
    async with open_runtime(config) as runtime, runtime.sessions.begin() as session:
        if await session.scalar(select(User).where(User.email == "admin@example.com")):
            raise AccountError("the demo data exists already (admin@example.com is a user)")
        users: dict[str, User] = {}
        for email, name, admin in [
            ("admin@example.com", "Ada Admin", True),
            ("alice@example.com", "Alice Liddell", False),
            ("bob@example.com", "Bob Builder", False),
        ]:
            users[email], keys[email] = await create_user(session, email, name=name, is_admin=admin)

        alice = await create_bucket(
            session, runtime.storage, "alice-data", owner_email="alice@example.com"
        )
        bob = await create_bucket(
            session, runtime.storage, "bob-data", owner_email="bob@example.com"
        )
        echo("writing demo files…")
        photos = []
        for key, data, ctype in _files(rng, "alice", 220):
            await _put(runtime.storage, alice, key, data, ctype)
            if key.startswith("photos/"):
                photos.append(len(data))
        await _put_big(runtime.storage, alice, "camera/VID_20250712_holiday.mp4", BIG_OBJECT_SIZE)
        for key, data, ctype in _files(rng, "bob", 80):
            await _put(runtime.storage, bob, key, data, ctype)

        _history(session.add_all, rng, users, {"alice@example.com": alice, "bob@example.com": bob})
        session.add(
            finished_transfer(
                runtime.master_key,
                users["alice@example.com"],
                alice.name,
                photos,
                datetime.now(UTC),
            )
        )
        alice_id = users["alice@example.com"].id

    echo("building alice's first export…")
    async with open_runtime(config) as runtime:
        await finished_export(
            runtime.sessions,
            runtime.storage,
            runtime.master_key,
            export_settings(config),
            alice_id,
        )

    echo("demo users (API keys are shown once; keep them):")
    for email, key in keys.items():
        echo(f"  {email:<20} {key}")
    if keys_file:
        path = Path(keys_file)
        private_dir(path.parent)
        fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{email} {key}\n" for email, key in keys.items())
    return keys


def _history(
    add_all: Callable[[list[object]], None],
    rng: random.Random,
    users: dict[str, User],
    buckets: dict[str, Bucket],
) -> None:
    """A year of usage, invoices and audit events, as a real account would have."""
    now = datetime.now(UTC).replace(microsecond=0)
    month0 = now.replace(day=1, hour=0, minute=0, second=0)
    rows: list[object] = []
    for email, bucket in buckets.items():
        user = users[email]
        stored = rng.randint(1, 20) * 1024 * MiB
        for m in range(12, 0, -1):
            start = (month0 - timedelta(days=31 * m)).replace(day=1)
            end = (start + timedelta(days=32)).replace(day=1)
            stored = int(stored * rng.uniform(1.0, 1.15))
            egress = rng.randint(0, stored // 4)
            rows.append(
                UsageRecord(
                    user_id=user.id,
                    bucket=bucket.name,
                    period_start=start,
                    period_end=end,
                    storage_bytes=stored,
                    egress_bytes=egress,
                    ingress_bytes=rng.randint(0, stored // 8),
                    requests=rng.randint(1_000, 500_000),
                )
            )
            cents = stored * 2 // (1024 * MiB) + egress // (1024 * MiB)
            rows.append(
                BillingRecord(
                    user_id=user.id,
                    invoice_number=f"INV-{start:%Y%m}-{user.email.split('@')[0]}",
                    period_start=start,
                    period_end=end,
                    amount_cents=max(cents, 100),
                    currency="EUR",
                    description=f"Storage and traffic, {start:%B %Y}",
                    status="open" if m == 1 else "paid",
                    created_at=end,
                )
            )
        events = [
            ("login", 200),
            ("api_keys.create", 201),
            ("buckets.create", 201),
            ("GetObject", 200),
            ("ListObjectsV2", 200),
        ]
        for i in range(40):
            action, status = rng.choice(events)
            rows.append(
                AuditLog(
                    created_at=now - timedelta(days=365 - i * 9, minutes=rng.randint(0, 1440)),
                    user_id=user.id,
                    actor="user",
                    action=action,
                    bucket=bucket.name,
                    key=f"docs/notes-{i:04d}.txt" if action == "GetObject" else None,
                    status=status,
                    bytes=rng.randint(0, 50_000) if action == "GetObject" else 0,
                    duration_ms=rng.randint(2, 120),
                    client_addr=f"198.51.100.{rng.randint(1, 254)}",
                    user_agent="aws-cli/2.15.0 Python/3.11",
                    details={"demo": True},
                )
            )
    add_all(rows)
