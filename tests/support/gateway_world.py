"""The gateway in-process for the functional tests: a real database, the local backend,
botocore-signed requests and a clock the tests move."""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from db.models import AuditLog
from gateway.app import GatewayApp, GatewaySettings
from gateway.audit import AuditWriter
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.local import LocalStorage
from sts.issue import IssueRequest, issue, revoke
from sts.store import CredentialStore
from tests.support.signing import sign

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
BASE = "http://testserver"
FILES = {
    "share/a.txt": b"not in scope",
    "share/photos/p1.jpg": b"0123456789" * 100,
    "share/photos/p2.jpg": b"photo two",
    "share/photos/2024/p3.jpg": b"photo three",
    "share/photosx/sibling.jpg": b"a sibling that shares the prefix's characters",
    "secret/s.txt": b"secret",
    "top.txt": b"top",
}


@dataclass
class Key:
    access_key_id: str
    secret: str
    token: str | None


@dataclass
class World:
    client: TestClient
    keys: dict[str, Key]
    clock: list[datetime]
    sessions: Any
    root: Path
    master_key: bytes
    owner_email: str

    def request(
        self,
        path: str,
        key: str = "photos",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        token: str | bool | None = True,
        when: datetime | None = None,
        presign: int | None = None,
    ) -> Any:
        k = self.keys[key]
        use_token = k.token if token is True else (None if token is False else token)
        signed = sign(
            BASE + path,
            access_key_id=k.access_key_id,
            secret=k.secret,
            token=use_token,
            method=method,
            headers=headers,
            presign=presign,
            when=when or self.clock[0],
        )
        return self.client.request(method, signed.url, headers=dict(signed.headers.items()))

    def audit_rows(self) -> list[AuditLog]:
        async def rows() -> list[AuditLog]:
            await asyncio.sleep(0.3)  # the writer flushes every 0.05 s
            async with self.sessions() as session:
                return list((await session.scalars(select(AuditLog))).all())

        return self.client.portal.call(rows)  # type: ignore[union-attr]


def error_code(response: Any) -> str | None:
    return ET.fromstring(response.content).findtext("Code")


@contextmanager
def open_world(database_url: str, root: Path) -> Iterator[World]:
    """The gateway in-process over the local backend at `root`, seeded with FILES, and one
    credential per kind of key the tests use."""
    storage = LocalStorage(root)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    master_key = secrets.token_bytes(32)
    clock = [datetime.now(UTC)]
    app = GatewayApp(
        storage=storage,
        credentials=CredentialStore(sessions, master_key, max_age=0.0),
        audit=AuditWriter(sessions, interval=0.05),
        settings=GatewaySettings(),
        clock=lambda: clock[0],
        sts=(sessions, master_key),
    )
    keys: dict[str, Key] = {}
    owner: list[str] = []

    async def seed() -> None:
        async with sessions.begin() as session:
            user, _ = await create_user(session, f"gw-{secrets.token_hex(4)}@example.com")
            owner.append(user.email)
            bucket = await create_bucket(
                session, storage, "alice-data", owner_email=user.email, backend_bucket="gw-alice"
            )

            async def body(data: bytes) -> AsyncIterator[bytes]:
                yield data

            for name, data in FILES.items():
                await storage.put("gw-alice", name, body(data), size=len(data))
            now = clock[0]
            grants = {
                "photos": IssueRequest(prefixes=("share/photos/",)),
                "tokenless": IssueRequest(prefixes=("share/",), session_token=False),
                "expiring": IssueRequest(prefixes=("share/",), ttl_seconds=900),
                "revoked": IssueRequest(prefixes=("share/",)),
                "cidr": IssueRequest(prefixes=("share/",), allowed_cidrs=("10.0.0.0/8",)),
            }
            for name, grant in grants.items():
                issued = await issue(session, master_key, user, bucket, grant, now=now)
                keys[name] = Key(
                    issued.credential.access_key_id, issued.secret, issued.session_token
                )
            await revoke(session, keys["revoked"].access_key_id, now=now)

    with TestClient(app) as client:
        client.portal.call(seed)  # type: ignore[union-attr]
        yield World(client, keys, clock, sessions, root, master_key, owner[0])
        # The audit writer stops and its queued rows go in first: a write after (or during)
        # the dispose would hold a connection that nothing closes.
        client.portal.call(app.audit.close)  # type: ignore[union-attr]
        client.portal.call(engine.dispose)  # type: ignore[union-attr]
