"""Users and their API keys. Keys are shown once and stored only as SHA-256 hashes.

An API key carries 256 bits of randomness, so a plain SHA-256 (not a slow password hash) is
enough: nobody can brute-force the preimage, and lookups stay one indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey, User

KEY_PREFIX = "fk_"
LAST_USED_GRAIN = timedelta(minutes=1)  # how fine an API key's last_used_at is kept
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AccountError(Exception):
    """Bad input for an account operation, with a message fit for the user."""


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def mask_api_key(prefix: str, last4: str) -> str:
    return f"{prefix}…{last4}"


async def create_user(
    session: AsyncSession,
    email: str,
    *,
    name: str | None = None,
    is_admin: bool = False,
    with_key: bool = True,
) -> tuple[User, str]:
    """Create a user with one API key; returns the user and the key (shown once).

    `with_key=False` (a user who signs in through the identity provider): no key, and ""
    for it; a key nobody was shown would only be one more secret to guard.
    """
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise AccountError(f"not an email address: {email!r}")
    if await session.scalar(select(User).where(User.email == email)) is not None:
        raise AccountError(f"a user with email {email} exists already")
    user = User(email=email, name=name or email.split("@")[0], is_admin=is_admin)
    session.add(user)
    await session.flush()
    if not with_key:
        return user, ""
    key = await add_api_key(session, user, name="default")
    return user, key


async def add_api_key(session: AsyncSession, user: User, *, name: str) -> str:
    key = new_api_key()
    session.add(
        ApiKey(
            user_id=user.id,
            name=name,
            key_hash=hash_api_key(key),
            prefix=key[:12],
            last4=key[-4:],
        )
    )
    await session.flush()
    return key


async def authenticate(session: AsyncSession, key: str) -> User | None:
    """The user owning an active API key, or None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 128:
        return None
    # One query for both: every API call runs it, and a burst of calls shares an event loop
    # with the gateway in `ferry serve`.
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    api_key, user = row
    now = datetime.now(UTC)
    last = api_key.last_used_at
    if last is None or now - last >= LAST_USED_GRAIN:
        # Written once a minute at most: an UPDATE of this row in every request made
        # concurrent calls with one key queue for its row lock (50 revokes took 10 s).
        api_key.last_used_at = now
    return user
