"""Session credentials minted through STS (AssumeRole, GetSessionToken) by a token-free key.

A destination provider's automation holds one long-lived, token-free migration key and mints
short-lived session credentials from it, as AWS STS and MinIO do: the session reads the
parent's bucket, within the parent's prefixes narrowed by an optional session policy
(sts/policy.py), lives `duration` seconds (900 to 43,200) but never past the parent's expiry,
always carries a session token, and dies with its parent (sts.issue.revoke).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential
from sts.exceptions import InvalidRequest
from sts.issue import Issued, status_of
from sts.keys import hash_token, new_access_key_id, new_secret, new_session_token
from sts.policy import MalformedPolicyDocument, session_prefixes
from sts.scope import normalise_prefixes
from sts.sealing import seal

DURATION_MIN = 900
DURATION_MAX = 43_200
DURATION_DEFAULT = 3600


async def mint_session(
    session: AsyncSession,
    master_key: bytes,
    parent: Credential,
    bucket: Bucket,
    *,
    now: datetime,
    duration_seconds: int = DURATION_DEFAULT,
    policy: str | None = None,
    name: str | None = None,
) -> Issued:
    """A session credential narrower than `parent`; InvalidRequest or
    MalformedPolicyDocument when the call asks for what Ferry will not grant."""
    if parent.kind != "user" or parent.session_token_hash is not None:
        raise InvalidRequest("only a token-free user credential may mint session credentials")
    if status_of(parent, now) != "active":
        raise InvalidRequest(f"the calling credential is {status_of(parent, now)}")
    if not DURATION_MIN <= duration_seconds <= DURATION_MAX:
        raise InvalidRequest(f"DurationSeconds must be between {DURATION_MIN} and {DURATION_MAX}")
    prefixes = normalise_prefixes(parent.prefixes)
    if policy is not None:
        prefixes = session_prefixes(policy, bucket=bucket.name, parent=prefixes)
        if not prefixes:
            raise MalformedPolicyDocument("the policy leaves nothing of the caller's to read")
    access_key_id = new_access_key_id()
    secret = new_secret()
    token = new_session_token()
    credential = Credential(
        id=uuid.uuid4(),
        access_key_id=access_key_id,
        user_id=parent.user_id,
        bucket_id=bucket.id,
        kind="session",
        parent_id=parent.id,
        parent_access_key_id=parent.access_key_id,
        label=f"session {name}" if name else "session",
        secret_sealed=seal(master_key, access_key_id, secret),
        session_token_hash=hash_token(token),
        prefixes=list(prefixes),
        permission="read-only",
        allowed_cidrs=parent.allowed_cidrs,
        max_bytes_per_second=parent.max_bytes_per_second,
        not_before=now,
        expires_at=min(now + timedelta(seconds=duration_seconds), parent.expires_at),
        created_at=now,
    )
    session.add(credential)
    await session.flush()
    return Issued(credential, bucket, secret, token)
