"""An API key's last use is recorded at a minute's grain, so concurrent calls do not queue on it."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update

from db.engine import create_engine, session_factory
from db.models import ApiKey
from portability.accounts import LAST_USED_GRAIN, authenticate, create_user


async def test_last_used_is_written_once_a_minute_at_most(database_url: str) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as session:
            user, key = await create_user(session, f"k-{secrets.token_hex(4)}@example.com")
        last_used = select(ApiKey.last_used_at).where(ApiKey.user_id == user.id)

        async with sessions.begin() as session:
            assert (await authenticate(session, key)) is not None
        async with sessions() as session:
            first = await session.scalar(last_used)
        assert first is not None
        async with sessions.begin() as session:
            assert (await authenticate(session, key)) is not None
        async with sessions() as session:
            assert await session.scalar(last_used) == first  # within the minute: not written

        earlier = first - LAST_USED_GRAIN - timedelta(seconds=1)
        async with sessions.begin() as session:
            await session.execute(
                update(ApiKey).where(ApiKey.user_id == user.id).values(last_used_at=earlier)
            )
        async with sessions.begin() as session:
            assert (await authenticate(session, key)) is not None
        async with sessions() as session:
            assert await session.scalar(last_used) > first
        async with sessions.begin() as session:
            assert await authenticate(session, key + "x") is None
    finally:
        await engine.dispose()
