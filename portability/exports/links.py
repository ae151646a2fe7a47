"""Where export objects live and how they are downloaded.

Export objects are kept out of the user's buckets: each user has one system bucket row,
`ferry-export-<user id hex>`, owned by the user, stored in the backend bucket
`[exports] bucket` (default `ferry-exports`) under the prefix `<user id>/`. One request's
objects are under `<request id>/` in it.

A download link is a presigned gateway URL (SigV4 query auth, `storage.s3_wire.Signer`: the
signing code the S3 client uses, whose steps the gateway's verifier shares) made with
an internal credential (`kind="export"`) scoped to the request's prefix whose life is the
link's. The gateway checks it like any other credential and audits each download; revoking
it (cancel, revoke-links) kills every link of the request at once. Links are never stored:
`portability.exports.downloads` signs them when the owner asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential, User
from storage.base import Storage
from storage.s3_wire import PRESIGNED_MAX_SECONDS, Signer
from sts.issue import TTL_MIN, IssueRequest, issue

BUCKET_PREFIX = "ferry-export-"
WORK_DIR = ".work"


def bucket_name(user_id: uuid.UUID) -> str:
    return BUCKET_PREFIX + user_id.hex


def is_export_bucket(bucket: Bucket) -> bool:
    """True for the system buckets that hold exports (never exported themselves)."""
    return bucket.name == bucket_name(bucket.owner_id)


def request_prefix(request_id: uuid.UUID) -> str:
    return f"{request_id}/"


def object_key(request_id: uuid.UUID, name: str) -> str:
    """The key (in the user's export bucket) of one of a request's objects."""
    return f"{request_id}/{name}"


async def export_bucket(
    session: AsyncSession, storage: Storage, user: User, *, backend_bucket: str
) -> Bucket:
    """The user's export bucket, created (row and backend bucket) on first use."""
    name = bucket_name(user.id)
    bucket = await session.scalar(select(Bucket).where(Bucket.name == name))
    if bucket is None:
        await storage.create_bucket(backend_bucket)
        bucket = Bucket(
            id=uuid.uuid4(),
            name=name,
            owner_id=user.id,
            backend_bucket=backend_bucket,
            backend_prefix=f"{user.id}/",
        )
        session.add(bucket)
        await session.flush()
    return bucket


def object_url(gateway_url: str, bucket: str, key: str) -> str:
    """The unsigned gateway URL of an export object: a reference the gateway refuses."""
    return gateway_url.rstrip("/") + "/" + bucket + "/" + quote(key, safe="/~")


@dataclass(frozen=True)
class LinkSigner:
    """Signs download links with one freshly issued export credential."""

    gateway_url: str
    region: str
    bucket: str
    access_key_id: str
    secret: str

    def url(self, key: str, *, expires_in: int) -> str:
        """A link for `expires_in` seconds, or a week if that is longer: SigV4's limit, which
        the gateway holds every link to (a longer-lived credential's link is made anew)."""
        signer = Signer(self.access_key_id, self.secret, None, self.region)
        url = object_url(self.gateway_url, self.bucket, key)
        seconds = min(max(1, expires_in), PRESIGNED_MAX_SECONDS)
        return signer.presign("GET", url, expires_in=seconds)


async def issue_link_credential(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    bucket: Bucket,
    request_id: uuid.UUID,
    *,
    ttl_seconds: int,
    now: datetime,
) -> tuple[Credential, str]:
    """An internal read-only credential for one request's objects; returns it and its secret."""
    issued = await issue(
        session,
        master_key,
        user,
        bucket,
        IssueRequest(
            prefixes=(request_prefix(request_id),),
            # The credential outlives short test links; the link's own X-Amz-Expires rules.
            ttl_seconds=max(ttl_seconds, TTL_MIN),
            session_token=False,  # a link carries no token (some gateways refuse one)
            label=f"export {request_id}",
            kind="export",
        ),
        now=now,
    )
    return issued.credential, issued.secret
