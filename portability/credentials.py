"""Pull credentials as the API and CLI present them: issue for a user's bucket, describe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential, User
from portability import events
from portability.http import ApiError
from portability.imports.handoff import build_handoff
from sts.exceptions import InvalidRequest, NotFound
from sts.issue import GRACE_DEFAULT, TTL_MAX, IssueRequest, issue, rotate, status_of
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
    events.record(
        session,
        actor=actor,
        action="credentials.issue",
        user_id=user.id,
        credential_id=credential.id,
        bucket=bucket.name,
        details={"access_key_id": credential.access_key_id, "prefixes": credential.prefixes},
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
    user: User,
    access_key_id: str,
    *,
    grace_seconds: int,
    endpoint: GatewayAddress,
    now: datetime,
    actor: str = "user",
) -> dict[str, Any]:
    """A new secret for one of `user`'s credentials; the answer carries it (once)."""
    credential, bucket, secret = await rotate(
        session, master_key, access_key_id, now=now, grace_seconds=grace_seconds, user_id=user.id
    )
    events.record(
        session,
        actor=actor,
        action="credentials.rotate",
        user_id=user.id,
        credential_id=credential.id,
        bucket=bucket.name,
        details={"access_key_id": access_key_id, "grace_seconds": grace_seconds},
    )
    answer = describe(credential, bucket, endpoint, now)
    answer["secret_access_key"] = secret
    # The session token, if any, stays what it was; the old secret works until then.
    answer["previous_secret_valid_until"] = iso(credential.previous_until)
    return answer


def parse_rotate_request(body: Any) -> int:
    """`grace_seconds` of POST …/rotate (an empty body: the default)."""
    if body is None:
        return GRACE_DEFAULT
    if not isinstance(body, dict) or set(body) - {"grace_seconds"}:
        raise InvalidRequest('the body must be {"grace_seconds": <seconds>} or empty')
    grace = body.get("grace_seconds", GRACE_DEFAULT)
    if not isinstance(grace, int) or isinstance(grace, bool):
        raise InvalidRequest("grace_seconds must be an integer")
    return grace


def parse_issue_request(body: Any, *, max_ttl_seconds: int = TTL_MAX) -> tuple[str, IssueRequest]:
    """Validate the JSON body of POST /api/portability/credentials."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    allowed = {
        "bucket",
        "prefixes",
        "ttl_seconds",
        "session_token",
        "allowed_cidrs",
        "max_bytes_per_second",
        "label",
    }
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    bucket = body.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise InvalidRequest("bucket is required")
    prefixes = body.get("prefixes", [""])
    if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
        raise InvalidRequest("prefixes must be a list of strings")
    if not prefixes:
        # An empty list reads as "nothing", not "everything": the whole bucket is asked for.
        raise ApiError(
            400, "bad_request", 'prefixes must not be empty: send [""] for the whole bucket'
        )
    ttl = body.get("ttl_seconds", 3600)
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise InvalidRequest("ttl_seconds must be an integer")
    token = body.get("session_token", True)
    if not isinstance(token, bool):
        raise InvalidRequest("session_token must be true or false")
    cidrs = body.get("allowed_cidrs") or []
    if not isinstance(cidrs, list) or not all(isinstance(c, str) for c in cidrs):
        raise InvalidRequest("allowed_cidrs must be a list of strings")
    rate = body.get("max_bytes_per_second")
    if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool)):
        raise InvalidRequest("max_bytes_per_second must be an integer or null")
    label = body.get("label")
    if label is not None and not isinstance(label, str):
        raise InvalidRequest("label must be a string")
    return bucket, IssueRequest(
        prefixes=tuple(prefixes),
        ttl_seconds=ttl,
        session_token=token,
        allowed_cidrs=tuple(cidrs),
        max_bytes_per_second=rate,
        label=label,
        max_ttl_seconds=max_ttl_seconds,
    )
