"""Pull credentials as the API and CLI present them: issue for a user's bucket, describe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential, User
from portability import events
from portability.imports.handoff import build_handoff
from sts.exceptions import NotFound
from sts.issue import IssueRequest, Revoked, issue, revoke, revoke_all, rotate, status_of
from sts.snippets import build_snippets


@dataclass(frozen=True)
class GatewayAddress:
    """Where pullers reach the gateway: put into answers and snippets."""

    url: str
    region: str


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


def describe(
    credential: Credential, bucket: Bucket, endpoint: GatewayAddress, now: datetime
) -> dict[str, Any]:
    """A credential without its secret, with what was pulled through it."""
    return {
        "access_key_id": credential.access_key_id,
        "user_id": str(credential.user_id),
        "bucket": bucket.name,
        "prefixes": list(credential.prefixes),
        "permission": credential.permission,
        "label": credential.label,
        "kind": credential.kind,  # "user", or "session": minted through STS by the parent
        "parent_access_key_id": credential.parent_access_key_id,
        "status": status_of(credential, now),
        "session_token_required": credential.session_token_hash is not None,
        "allowed_cidrs": credential.allowed_cidrs or [],
        "max_bytes_per_second": credential.max_bytes_per_second,
        "endpoint_url": endpoint.url,
        "region": endpoint.region,
        "created_at": iso(credential.created_at),
        "expires_at": iso(credential.expires_at),
        "revoked_at": iso(credential.revoked_at),
        "last_used_at": iso(credential.last_used_at),
        "pulled": {
            "bytes": credential.bytes_served,
            "objects": credential.objects_served,
            "requests": credential.requests_served,
        },
    }


async def issue_for_user(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    bucket_name: str,
    request: IssueRequest,
    *,
    endpoint: GatewayAddress,
    now: datetime,
    actor: str = "user",
) -> dict[str, Any]:
    """Issue a credential on one of `user`'s buckets; the answer carries the secret (once)."""
    bucket = await session.scalar(select(Bucket).where(Bucket.name == bucket_name))
    if bucket is None or bucket.owner_id != user.id:
        # One answer for "missing" and "someone else's": no probing of bucket names.
        raise NotFound(f"no bucket {bucket_name!r} owned by {user.email}")
    result = await issue(session, master_key, user, bucket, request, now=now)
    credential = result.credential
    _audit(
        session,
        "credentials.issue",
        credential.access_key_id,
        credential,
        actor=actor,
        bucket=bucket.name,
        details={"prefixes": credential.prefixes},
    )
    answer = describe(credential, bucket, endpoint, now)
    answer["secret_access_key"] = result.secret
    answer["session_token"] = result.session_token
    answer["snippets"] = build_snippets(
        endpoint_url=endpoint.url,
        region=endpoint.region,
        bucket=bucket.name,
        prefixes=tuple(credential.prefixes),
        access_key_id=credential.access_key_id,
        secret=result.secret,
        session_token=result.session_token,
    )
    answer["handoff"] = build_handoff(answer)
    return answer


async def rotate_for_user(
    session: AsyncSession,
    master_key: bytes,
    user: User | None,
    access_key_id: str,
    *,
    grace_seconds: int,
    endpoint: GatewayAddress,
    now: datetime,
    actor: str = "user",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new secret for one of `user`'s credentials (None: anyone's, for an admin); the
    answer carries it (once)."""
    credential, bucket, secret = await rotate(
        session,
        master_key,
        access_key_id,
        now=now,
        grace_seconds=grace_seconds,
        user_id=user.id if user else None,
    )
    _audit(
        session,
        "credentials.rotate",
        access_key_id,
        credential,
        actor=actor,
        bucket=bucket.name,
        details={"grace_seconds": grace_seconds, **(details or {})},
    )
    answer = describe(credential, bucket, endpoint, now)
    answer["secret_access_key"] = secret
    # The session token, if any, stays what it was; the old secret works until then.
    answer["previous_secret_valid_until"] = iso(credential.previous_until)
    return answer


async def revoke_credential(
    session: AsyncSession,
    access_key_id: str,
    *,
    now: datetime,
    actor: str,
    user: User | None = None,
    details: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> Revoked:
    """Revoke one credential, `user`'s (None: anyone's, for an admin), and audit it."""
    credential = await revoke(session, access_key_id, now=now, user_id=user.id if user else None)
    _audit(
        session,
        "credentials.revoke",
        access_key_id,
        credential,
        actor=actor,
        details=details,
        client=client,
    )
    return credential


async def revoke_user_credentials(
    session: AsyncSession,
    user: User,
    *,
    now: datetime,
    details: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
) -> int:
    """Revoke every live credential of `user` (an admin's act), and audit it."""
    count = await revoke_all(session, user.id, now=now)
    events.record(
        session,
        actor="admin",
        action="credentials.revoke_all",
        user_id=user.id,
        details={"revoked": count, **(details or {})},
        **(client or {}),
    )
    return count


def _audit(
    session: AsyncSession,
    action: str,
    access_key_id: str,
    credential: Credential | Revoked,
    *,
    actor: str,
    details: dict[str, Any] | None,
    bucket: str | None = None,
    client: dict[str, Any] | None = None,
) -> None:
    """One credential's event in the audit log, its key id among the details."""
    events.record(
        session,
        actor=actor,
        action=action,
        user_id=credential.user_id,
        credential_id=credential.id,
        bucket=bucket,
        details={"access_key_id": access_key_id, **(details or {})},
        **(client or {}),
    )
