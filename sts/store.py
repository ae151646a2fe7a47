"""The gateway's view of credentials: unsealed, cached for at most half a second.

Revocation must reach every gateway instance within one second. Instances share nothing but
the database, so each keeps a credential for at most `max_age` seconds before reading it
again: a revoke is seen within max_age plus one query, however many instances run. Concurrent
misses for one key share a single query.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Bucket, Credential
from sts.scope import Scope, normalise_prefixes, parse_cidrs
from sts.sealing import unseal


@dataclass(frozen=True)
class LiveCredential:
    id: uuid.UUID
    access_key_id: str
    user_id: uuid.UUID
    secret: str = field(repr=False)
    session_token_hash: str | None
    scope: Scope
    backend_bucket: str
    backend_prefix: str
    not_before: datetime
    expires_at: datetime
    revoked_at: datetime | None
    max_bytes_per_second: int | None


class CredentialStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        master_key: bytes,
        *,
        max_age: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._master_key = master_key
        self._max_age = max_age
        self._clock = clock
        self._cache: dict[str, tuple[float, LiveCredential | None]] = {}
        self._pending: dict[str, asyncio.Future[LiveCredential | None]] = {}

    async def get(self, access_key_id: str) -> LiveCredential | None:
        """The credential (revoked or expired ones included: the caller says why it refuses)."""
        hit = self._cache.get(access_key_id)
        if hit is not None and self._clock() - hit[0] < self._max_age:
            return hit[1]
        pending = self._pending.get(access_key_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LiveCredential | None] = asyncio.get_running_loop().create_future()
        self._pending[access_key_id] = future
        try:
            fetched_at = self._clock()
            value = await self._load(access_key_id)
            if len(self._cache) > 10_000:
                self._cache.clear()  # bounded memory under a flood of made-up key ids
            self._cache[access_key_id] = (fetched_at, value)
            future.set_result(value)
            return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._pending[access_key_id]

    async def _load(self, access_key_id: str) -> LiveCredential | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Credential, Bucket)
                    .join(Bucket, Bucket.id == Credential.bucket_id)
                    .where(Credential.access_key_id == access_key_id)
                )
            ).first()
        if row is None:
            return None
        credential, bucket = row[0], row[1]
        return LiveCredential(
            id=credential.id,
            access_key_id=credential.access_key_id,
            user_id=credential.user_id,
            secret=unseal(self._master_key, credential.access_key_id, credential.secret_sealed),
            session_token_hash=credential.session_token_hash,
            scope=Scope(
                bucket=bucket.name,
                prefixes=normalise_prefixes(credential.prefixes),
                networks=parse_cidrs(credential.allowed_cidrs or ()),
            ),
            backend_bucket=bucket.backend_bucket,
            backend_prefix=bucket.backend_prefix,
            not_before=credential.not_before,
            expires_at=credential.expires_at,
            revoked_at=credential.revoked_at,
            max_bytes_per_second=credential.max_bytes_per_second,
        )
