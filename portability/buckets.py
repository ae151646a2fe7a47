"""Ferry buckets: a user's bucket name mapped to a backend bucket and key prefix."""

from __future__ import annotations

import ipaddress
import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, User
from portability.accounts import AccountError
from storage.base import Storage

# Ferry keeps each user's export objects in a system bucket named with this prefix.
RESERVED_PREFIX = "ferry-export"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(name: str) -> str:
    """S3's bucket naming rules, so every client can address the bucket path- or host-style."""
    if not _BUCKET.match(name) or ".." in name or ".-" in name or "-." in name:
        raise AccountError(
            f"invalid bucket name {name!r}: 3-63 lower-case letters, digits, '-' or '.'"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise AccountError(f"invalid bucket name {name!r}: must not look like an IP address")


async def create_bucket(
    session: AsyncSession,
    storage: Storage,
    name: str,
    *,
    owner_email: str,
    backend_bucket: str | None = None,
    backend_prefix: str = "",
) -> Bucket:
    check_bucket_name(name)
    if name.startswith(RESERVED_PREFIX):
        raise AccountError(f"bucket names starting with {RESERVED_PREFIX!r} are Ferry's own")
    owner = await session.scalar(select(User).where(User.email == owner_email.strip().lower()))
    if owner is None:
        raise AccountError(f"no user with email {owner_email}")
    if await session.scalar(select(Bucket).where(Bucket.name == name)) is not None:
        raise AccountError(f"bucket {name} exists already")
    backend_bucket = check_bucket_name(backend_bucket or name)
    await storage.create_bucket(backend_bucket)
    bucket = Bucket(
        name=name, owner_id=owner.id, backend_bucket=backend_bucket, backend_prefix=backend_prefix
    )
    session.add(bucket)
    await session.flush()
    return bucket
