"""The gateway's credential cache: stale entries are checked together, revocations seen.

A real database (PostgreSQL under CI); the statements the store sends are counted with
SQLAlchemy's cursor event, and the store's clock is moved by hand.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.models import Credential
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.local import LocalStorage
from sts.issue import IssueRequest, issue, revoke
from sts.store import CredentialStore

KEYS = 60


class Counted:
    """Statements sent through one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            self.statements.append(statement)

    def selects_of_credentials(self) -> int:
        return sum(
            1
            for s in self.statements
            if s.lstrip().upper().startswith("SELECT") and "credentials" in s
        )


@pytest.fixture
async def world(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[async_sessionmaker[AsyncSession], bytes, list[str]]]:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    master_key = secrets.token_bytes(32)
    keys: list[str] = []
    async with sessions.begin() as session:
        user, _ = await create_user(session, f"cs-{secrets.token_hex(4)}@example.com")
        bucket = await create_bucket(
            session,
            LocalStorage(tmp_path),
            f"cs-{secrets.token_hex(3)}",
            owner_email=user.email,
            backend_bucket=f"cs-{secrets.token_hex(3)}",
        )
        for _ in range(KEYS):
            issued = await issue(
                session, master_key, user, bucket, IssueRequest(), now=datetime.now(UTC)
            )
            keys.append(issued.credential.access_key_id)
    yield sessions, master_key, keys
    await engine.dispose()


async def test_stale_keys_are_checked_in_one_round(
    world: tuple[async_sessionmaker[AsyncSession], bytes, list[str]],
) -> None:
    sessions, master_key, keys = world
    now = [0.0]
    store = CredentialStore(sessions, master_key, max_age=0.5, clock=lambda: now[0])
    for key in keys:
        assert (await store.get(key)) is not None
    engine = sessions.kw["bind"]
    counted = Counted(engine)

    # Fresh: no query at all.
    await asyncio.gather(*(store.get(key) for key in keys))
    assert counted.selects_of_credentials() == 0

    # All stale at once: one check for all of them, not one read per key.
    now[0] = 1.0
    found = await asyncio.gather(*(store.get(key) for key in keys))
    assert all(c is not None and c.revoked_at is None for c in found)
    assert counted.selects_of_credentials() == 1

    # And fresh again until max_age has passed since that check.
    now[0] = 1.4
    await asyncio.gather(*(store.get(key) for key in keys))
    assert counted.selects_of_credentials() == 1


async def test_a_revocation_is_seen_at_the_next_check(
    world: tuple[async_sessionmaker[AsyncSession], bytes, list[str]],
) -> None:
    sessions, master_key, keys = world
    now = [0.0]
    store = CredentialStore(sessions, master_key, max_age=0.5, clock=lambda: now[0])
    await asyncio.gather(*(store.get(key) for key in keys[:3]))
    async with sessions.begin() as session:
        await revoke(session, keys[0], now=datetime.now(UTC))
        await session.execute(delete(Credential).where(Credential.access_key_id == keys[1]))

    # Within max_age the cached answer stands (that is the documented window)...
    now[0] = 0.4
    cached = await store.get(keys[0])
    assert cached is not None and cached.revoked_at is None

    # ...and after it the revocation and the deletion show, the third key unchanged.
    now[0] = 0.6
    revoked, deleted, other = await asyncio.gather(*(store.get(key) for key in keys[:3]))
    assert revoked is not None and revoked.revoked_at is not None
    assert revoked.secret and revoked.scope.bucket  # the rest of the entry is kept
    assert deleted is None
    assert other is not None and other.revoked_at is None


async def test_a_failed_check_fails_its_waiters_and_the_next_one_works(
    world: tuple[async_sessionmaker[AsyncSession], bytes, list[str]], tmp_path: Path
) -> None:
    sessions, master_key, keys = world
    empty = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables
    current = [sessions]  # the database the store reaches; it goes away and comes back
    now = [0.0]
    store = CredentialStore(
        lambda: current[0](),  # type: ignore[arg-type]
        master_key,
        max_age=0.5,
        clock=lambda: now[0],
    )
    await store.get(keys[0])

    current[0] = session_factory(empty)
    now[0] = 1.0
    with pytest.raises(OperationalError, match="no such table: credentials"):
        await asyncio.gather(store.get(keys[0]), store.get(keys[0]))
    await empty.dispose()

    current[0] = sessions
    now[0] = 2.0
    again = await store.get(keys[0])
    assert again is not None and again.revoked_at is None


async def test_keys_in_use_are_checked_ahead_so_requests_do_not_wait_for_the_database(
    world: tuple[async_sessionmaker[AsyncSession], bytes, list[str]], tmp_path: Path
) -> None:
    sessions, master_key, keys = world
    empty = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")  # no tables
    current = [sessions]
    store = CredentialStore(lambda: current[0](), master_key, max_age=2.0)  # type: ignore[arg-type]
    store.start()
    try:
        assert await store.get(keys[0]) is not None
        # Longer than max_age since it was read, but the background round re-checked it
        # meanwhile (every second here): with the database gone, the request still passes.
        await asyncio.sleep(2.5)
        current[0] = session_factory(empty)
        again = await store.get(keys[0])
        assert again is not None and again.revoked_at is None
        # A key nobody used is not kept fresh: its next request needs the database.
        await asyncio.sleep(0)
        with pytest.raises(OperationalError, match="no such table: credentials"):
            await store.get(keys[1])

        current[0] = sessions
        async with sessions.begin() as session:
            await revoke(session, keys[0], now=datetime.now(UTC))
        await asyncio.sleep(2.1)  # max_age: no answer older than this is trusted
        revoked = await store.get(keys[0])
        assert revoked is not None and revoked.revoked_at is not None
    finally:
        await store.close()
        await empty.dispose()
