"""Issue, list and revoke pull credentials.

Callers decide who may act for whom (a user for their own buckets, an admin for anyone's);
this module enforces what any credential may be: read-only, one bucket, prefixes, a TTL
within 900 s..7 days (a token-free migration key: up to the longest an admin allows, at most
365 days), optional client networks and bandwidth cap.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential, User
from db.outbox import credential_event
from sts.exceptions import InvalidRequest, NotFound
from sts.keys import hash_token, new_access_key_id, new_secret, new_session_token
from sts.scope import MAX_PREFIXES, normalise_prefixes, parse_cidrs
from sts.sealing import seal

TTL_MIN = 900
TTL_MAX = 604_800  # SigV4's own limit for presigned URLs, and R2's for temporary credentials
TTL_DEFAULT = 3600
TTL_LIMIT = 365 * 86_400  # the longest [sts] max_ttl_seconds may allow for token-free keys
RATE_MIN = 1024
RATE_MAX = 2**40  # a cap above 1 TiB/s is no cap, and stays far inside a BIGINT


@dataclass(frozen=True)
class IssueRequest:
    prefixes: tuple[str, ...] = ("",)
    ttl_seconds: int = TTL_DEFAULT
    session_token: bool = True
    allowed_cidrs: tuple[str, ...] = ()
    max_bytes_per_second: int | None = None
    label: str | None = None
    kind: str = "user"  # "export": an internal credential behind download links
    # The longest life the installation allows a token-free key ([sts] max_ttl_seconds):
    # migrations that outlive a week. Keys with a session token stay within 7 days.
    max_ttl_seconds: int = TTL_MAX

    def __post_init__(self) -> None:
        if not TTL_MAX <= self.max_ttl_seconds <= TTL_LIMIT:
            raise InvalidRequest(f"max_ttl_seconds must be between {TTL_MAX} and {TTL_LIMIT}")
        longest = TTL_MAX if self.session_token else self.max_ttl_seconds
        if not TTL_MIN <= self.ttl_seconds <= longest:
            raise InvalidRequest(
                f"ttl_seconds must be between {TTL_MIN} and {longest}"
                + (
                    " (with a session token; a token-free key may live longer)"
                    if self.session_token and self.max_ttl_seconds > TTL_MAX
                    else ""
                )
            )
        if not self.prefixes or len(self.prefixes) > MAX_PREFIXES:
            raise InvalidRequest(f"give 1 to {MAX_PREFIXES} prefixes")
        rate = self.max_bytes_per_second
        if rate is not None and not RATE_MIN <= rate <= RATE_MAX:
            raise InvalidRequest(
                f"max_bytes_per_second must be between {RATE_MIN} and {RATE_MAX} (1 TiB/s)"
            )
        if self.label is not None and len(self.label) > 200:
            raise InvalidRequest("label is longer than 200 characters")
        parse_cidrs(self.allowed_cidrs)
        normalise_prefixes(self.prefixes)


@dataclass(frozen=True)
class Issued:
    credential: Credential
    bucket: Bucket
    secret: str
    session_token: str | None = field(repr=False)

    def __repr__(self) -> str:
        return f"Issued({self.credential.access_key_id})"


async def issue(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    bucket: Bucket,
    request: IssueRequest,
    *,
    now: datetime,
) -> Issued:
    if bucket.owner_id != user.id:
        raise InvalidRequest(f"bucket {bucket.name} does not belong to {user.email}")
    access_key_id = new_access_key_id()
    secret = new_secret()
    token = new_session_token() if request.session_token else None
    credential = Credential(
        id=uuid.uuid4(),
        access_key_id=access_key_id,
        user_id=user.id,
        bucket_id=bucket.id,
        kind=request.kind,
        label=request.label,
        secret_sealed=seal(master_key, access_key_id, secret),
        session_token_hash=hash_token(token) if token else None,
        prefixes=list(normalise_prefixes(request.prefixes)),
        permission="read-only",
        allowed_cidrs=list(request.allowed_cidrs) or None,
        max_bytes_per_second=request.max_bytes_per_second,
        not_before=now,
        expires_at=now + timedelta(seconds=request.ttl_seconds),
        created_at=now,
    )
    session.add(credential)
    await session.flush()
    return Issued(credential, bucket, secret, token)


GRACE_DEFAULT = 3600
GRACE_MAX = 7 * 86_400


async def rotate(
    session: AsyncSession,
    master_key: bytes,
    access_key_id: str,
    *,
    now: datetime,
    grace_seconds: int = GRACE_DEFAULT,
    user_id: uuid.UUID | None = None,
) -> tuple[Credential, Bucket, str]:
    """A new secret for the same key id and scope; the old one keeps working for
    `grace_seconds` (0: it stops at once), as IAM keeps two access keys during a switch."""
    if not 0 <= grace_seconds <= GRACE_MAX:
        raise InvalidRequest(f"grace_seconds must be between 0 and {GRACE_MAX}")
    credential, bucket = await find(session, access_key_id, user_id=user_id)
    if status_of(credential, now) != "active":
        raise InvalidRequest(f"credential {access_key_id} is {status_of(credential, now)}")
    secret = new_secret()
    credential.previous_secret_sealed = credential.secret_sealed
    credential.previous_until = now + timedelta(seconds=grace_seconds)
    credential.secret_sealed = seal(master_key, access_key_id, secret)
    credential.rotated_at = now
    await session.flush()
    return credential, bucket, secret


async def find(
    session: AsyncSession, access_key_id: str, *, user_id: uuid.UUID | None = None
) -> tuple[Credential, Bucket]:
    """A credential and its bucket; with user_id, only that user's (else NotFound)."""
    query = (
        select(Credential, Bucket)
        .join(Bucket, Bucket.id == Credential.bucket_id)
        .where(Credential.access_key_id == access_key_id)
    )
    if user_id is not None:
        query = query.where(Credential.user_id == user_id)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no credential {access_key_id}")
    return row[0], row[1]


async def list_credentials(
    session: AsyncSession,
    *,
    now: datetime,
    user_id: uuid.UUID | None = None,
    active_only: bool = False,
    kinds: tuple[str, ...] | None = ("user", "session"),
) -> list[tuple[Credential, Bucket]]:
    query = select(Credential, Bucket).join(Bucket, Bucket.id == Credential.bucket_id)
    if user_id is not None:
        query = query.where(Credential.user_id == user_id)
    if kinds is not None:
        query = query.where(Credential.kind.in_(kinds))
    if active_only:
        query = query.where(Credential.revoked_at.is_(None), Credential.expires_at > now)
    query = query.order_by(Credential.created_at.desc())
    return [(c, b) for c, b in (await session.execute(query)).all()]


class Revoked(NamedTuple):
    id: uuid.UUID
    user_id: uuid.UUID


async def revoke(
    session: AsyncSession, access_key_id: str, *, now: datetime, user_id: uuid.UUID | None = None
) -> Revoked:
    """Revoke one credential (idempotent: revoking twice keeps the first time).

    One UPDATE in the common case: in `ferry serve` a burst of revokes shares the gateway's
    event loop, so each should cost it little.
    """
    mine = [Credential.user_id == user_id] if user_id is not None else []
    row = (
        await session.execute(
            update(Credential)
            .where(
                Credential.access_key_id == access_key_id, Credential.revoked_at.is_(None), *mine
            )
            .values(revoked_at=now)
            .returning(Credential.id, Credential.user_id, Credential.kind)
        )
    ).first()
    if row is None:  # revoked already, or not (this user's) credential: NotFound
        credential, _ = await find(session, access_key_id, user_id=user_id)
        return Revoked(credential.id, credential.user_id)
    if row.kind == "user":  # an export's link credential is the request's business
        credential_event(
            session, "credential.revoked", access_key_id=access_key_id, user_id=row.user_id, at=now
        )
    await _revoke_sessions(session, [row.id], now)
    return Revoked(row.id, row.user_id)


async def _revoke_sessions(session: AsyncSession, parents: list[uuid.UUID], now: datetime) -> None:
    """Revoking a credential revokes every session credential it minted (STS), at once."""
    if parents:
        await session.execute(
            update(Credential)
            .where(Credential.parent_id.in_(parents), Credential.revoked_at.is_(None))
            .values(revoked_at=now)
        )


async def revoke_all(session: AsyncSession, user_id: uuid.UUID, *, now: datetime) -> int:
    """Revoke every live credential of a user; returns how many were revoked."""
    rows = (
        await session.execute(
            update(Credential)
            .where(Credential.user_id == user_id, Credential.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(Credential.id, Credential.access_key_id, Credential.kind)
        )
    ).all()
    await _revoke_sessions(session, [row.id for row in rows], now)
    for row in rows:
        if row.kind == "user":
            credential_event(
                session,
                "credential.revoked",
                access_key_id=row.access_key_id,
                user_id=user_id,
                at=now,
            )
    return len(rows)


def status_of(credential: Credential, now: datetime) -> str:
    if credential.revoked_at is not None:
        return "revoked"
    if credential.expires_at <= now:
        return "expired"
    return "active"
