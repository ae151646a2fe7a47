"""Dashboard sessions on the server: opened at sign-in, ended at sign-out, checked each request.

The cookie (see sessions.py) carries a random session id; the table keeps its SHA-256 with the
user, the API key it was opened with (revoking the key ends it too) or, for an OpenID Connect
session, the ID token to hand back at sign-out, its expiry and when it was ended. Ending a
session is a row update, so a copied cookie stops working at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey, DashboardSession, User

# Ended and expired rows are kept a day (the admin console may show them), then deleted by
# the next sign-in.
KEEP_ENDED = timedelta(days=1)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(
    db: AsyncSession,
    *,
    user_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    method: str,
    now: datetime,
    max_age: int,
    id_token_hint: str | None = None,
) -> str:
    """A new session's id (for the cookie); the table keeps only its hash."""
    await db.execute(delete(DashboardSession).where(DashboardSession.expires_at < now - KEEP_ENDED))
    session_id = secrets.token_urlsafe(32)
    db.add(
        DashboardSession(
            id_hash=_hash(session_id),
            user_id=user_id,
            api_key_id=api_key_id,
            method=method,
            created_at=now,
            expires_at=now + timedelta(seconds=max_age),
            id_token_hint=id_token_hint,
        )
    )
    return session_id


async def session_user(db: AsyncSession, session_id: str, now: datetime) -> User | None:
    """The user of a live session: not ended, not expired, its API key (if any) not revoked."""
    row = await db.scalar(
        select(DashboardSession).where(
            DashboardSession.id_hash == _hash(session_id),
            DashboardSession.ended_at.is_(None),
            DashboardSession.expires_at > now,
        )
    )
    if row is None:
        return None
    if row.api_key_id is not None:
        key = await db.scalar(
            select(ApiKey.id).where(ApiKey.id == row.api_key_id, ApiKey.revoked_at.is_(None))
        )
        if key is None:
            return None
    return await db.get(User, row.user_id)


@dataclass(frozen=True)
class EndedSession:
    method: str  # how it was opened: 'api_key' or 'oidc'
    id_token_hint: str | None


async def end_session(db: AsyncSession, session_id: str, now: datetime) -> EndedSession | None:
    """End a session: how it was opened, or None if it was not live."""
    row = await db.scalar(
        select(DashboardSession).where(
            DashboardSession.id_hash == _hash(session_id), DashboardSession.ended_at.is_(None)
        )
    )
    if row is None:
        return None
    ended = EndedSession(row.method, row.id_token_hint)
    row.ended_at = now
    row.id_token_hint = None  # used once, at this sign-out; not kept beyond it
    return ended


async def end_all_sessions(db: AsyncSession, user_id: uuid.UUID, now: datetime) -> int:
    """Sign a user out everywhere; how many live sessions were ended."""
    result = await db.execute(
        update(DashboardSession)
        .where(
            DashboardSession.user_id == user_id,
            DashboardSession.ended_at.is_(None),
            DashboardSession.expires_at > now,
        )
        .values(ended_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)
