"""A user with an API key and a bucket, made in a database of the test's own."""

from __future__ import annotations

from db.engine import create_engine, session_factory
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.base import Storage


async def user_with_bucket(database_url: str, storage: Storage, name: str) -> str:
    """User `name@example.com` owning bucket `name`; their API key."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine).begin() as session:
            _, key = await create_user(session, f"{name}@example.com")
            await create_bucket(session, storage, name, owner_email=f"{name}@example.com")
    finally:
        await engine.dispose()
    return key
