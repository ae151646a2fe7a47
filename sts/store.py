"""The gateway's view of credentials: unsealed, and checked again every half second.

Revocation must reach every gateway instance within one second. Instances share nothing but
the database, so each trusts what it read about a credential for at most `max_age` seconds:
a revoke is seen within max_age plus one query, however many instances run.

A credential never changes after it is issued except by being revoked (or deleted), so a
stale entry needs only its `revoked_at` read again, and all the entries gone stale meanwhile
are checked together: one query at a time per process, whatever the number of keys in use.
Reading each key on its own put a query behind 40% of requests with 200 busy keys, and the
queue for the connection pool became the gateway's latency. Unknown keys are read the same
way: those asked for while a read runs are read together by the next one (200 clients
starting at once made 200 queries, and the gateway took seconds to catch up).

Once started (the gateway's lifespan does it), a background round every max_age / 2 also
re-checks the keys used in the last minute before they go stale, so a client that sends a
request every second or two does not wait for the database each time; a request still
waits whenever its entry is older than max_age (the round fell behind), so the bound holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Bucket, Credential
from sts.scope import Scope, normalise_prefixes, parse_cidrs
from sts.sealing import unseal

log = logging.getLogger(__name__)

# Keys used this recently are re-checked ahead of time by the background round.
RECENTLY_USED = 60.0
REREAD_AFTER = 0.05  # seconds: a cached entry younger than this is not read again


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
    # After a rotation, the previous secret until the grace period ends.
    previous_secret: str | None = field(default=None, repr=False)
    previous_until: datetime | None = None
    rotated_at: datetime | None = None

    def secrets(self, now: datetime) -> tuple[str, ...]:
        """The secrets a request may be signed with now: the current one, and during a
        rotation's grace period the previous one."""
        if self.previous_secret and self.previous_until and now < self.previous_until:
            return (self.secret, self.previous_secret)
        return (self.secret,)


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
        # key id -> (when the query that vouches for the entry started, the entry)
        self._cache: dict[str, tuple[float, LiveCredential | None]] = {}
        self._checks = _Rounds(self._check)  # known keys: is revoked_at still the same?
        self._loads = _Rounds(self._load)  # other keys: the full read
        self._used: dict[str, float] = {}  # known key -> when a request last asked for it
        self._refreshing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start re-checking keys in use ahead of time (needs a running loop)."""
        if self._refreshing is None and self._max_age > 0:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
            self._refreshing = None
        await self._checks.close()
        await self._loads.close()

    async def get(self, access_key_id: str) -> LiveCredential | None:
        """The credential (revoked or expired ones included: the caller says why it refuses)."""
        now = self._clock()
        hit = self._cache.get(access_key_id)
        if hit is not None and hit[1] is not None:
            self._used[access_key_id] = now
        if hit is not None and now - hit[0] < self._max_age:
            return hit[1]
        if hit is not None and hit[1] is not None:
            await self._checks.ask((access_key_id,))
        else:
            # Unknown keys asked for together (200 clients starting at once) are read in
            # one query per round, as stale ones are checked.
            await self._loads.ask((access_key_id,))
        hit = self._cache.get(access_key_id)
        if hit is None:  # deleted since it was known, or dropped from a flooded cache
            await self._loads.ask((access_key_id,))
            hit = self._cache.get(access_key_id)
        return None if hit is None else hit[1]

    async def reread(self, access_key_id: str) -> LiveCredential | None:
        """The credential read afresh unless it was read a moment ago: a signature that does
        not match the cached secret may be made with one rotated in since."""
        hit = self._cache.get(access_key_id)
        if hit is None or self._clock() - hit[0] >= REREAD_AFTER:
            await self._loads.ask((access_key_id,))
            hit = self._cache.get(access_key_id)
        return None if hit is None else hit[1]

    async def _refresh(self) -> None:
        """Every max_age / 2, check the keys in use again, before their entries go stale."""
        while True:
            await asyncio.sleep(self._max_age / 2)
            now = self._clock()
            for key, used in list(self._used.items()):
                if now - used > RECENTLY_USED:
                    del self._used[key]
            due = [
                key
                for key in self._used
                if (hit := self._cache.get(key)) is not None
                and hit[1] is not None
                and now - hit[0] >= self._max_age / 4  # not checked since the last round
            ]
            if not due:
                continue
            try:
                await self._checks.ask(due)
            except Exception:
                # The requests that need these keys wait for a check of their own.
                log.warning("checking credentials ahead of time failed", exc_info=True)

    async def _check(self, keys: set[str]) -> None:
        started = self._clock()
        states = await self._revocations(keys)
        for key in keys:
            entry = self._cache.get(key)
            if key not in states:
                self._cache.pop(key, None)  # deleted: the next request reads it afresh
            elif entry is not None and entry[1] is not None:
                revoked_at, rotated_at = states[key]
                if rotated_at != entry[1].rotated_at:
                    self._cache.pop(key, None)  # a new secret: read it afresh
                else:
                    self._cache[key] = (started, replace(entry[1], revoked_at=revoked_at))

    async def _load(self, keys: set[str]) -> None:
        started = self._clock()
        found = await self._credentials(keys)
        if len(self._cache) + len(keys) > 10_000:
            self._cache.clear()  # bounded memory under a flood of made-up key ids
        for key in keys:
            value = found.get(key)
            self._cache[key] = (started, value)
            if value is not None:
                self._used[key] = started

    async def _revocations(
        self, keys: Iterable[str]
    ) -> dict[str, tuple[datetime | None, datetime | None]]:
        """(`revoked_at`, `rotated_at`) of each key that still exists."""
        found: dict[str, tuple[datetime | None, datetime | None]] = {}
        async with self._sessions() as session:
            for chunk in _chunks(keys):
                rows = await session.execute(
                    select(
                        Credential.access_key_id, Credential.revoked_at, Credential.rotated_at
                    ).where(Credential.access_key_id.in_(chunk))
                )
                found.update({key: (revoked, rotated) for key, revoked, rotated in rows})
        return found

    async def _credentials(self, keys: Iterable[str]) -> dict[str, LiveCredential]:
        """The full read of each key that exists."""
        found: dict[str, LiveCredential] = {}
        async with self._sessions() as session:
            for chunk in _chunks(keys):
                rows = await session.execute(
                    select(Credential, Bucket)
                    .join(Bucket, Bucket.id == Credential.bucket_id)
                    .where(Credential.access_key_id.in_(chunk))
                )
                for credential, bucket in rows:
                    found[credential.access_key_id] = self._live(credential, bucket)
        return found

    def _live(self, credential: Credential, bucket: Bucket) -> LiveCredential:
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
            previous_secret=(
                unseal(
                    self._master_key, credential.access_key_id, credential.previous_secret_sealed
                )
                if credential.previous_secret_sealed
                else None
            ),
            previous_until=credential.previous_until,
            rotated_at=credential.rotated_at,
        )


def _chunks(keys: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """Keys in sorted slices small enough for one IN (…) list."""
    ordered = sorted(keys)
    for start in range(0, len(ordered), size):
        yield ordered[start : start + size]


class _Rounds:
    """Keys asked for while a round runs wait for the next one: one query per round per
    process, however many keys are asked for at once."""

    def __init__(self, run: Callable[[set[str]], Awaitable[None]]) -> None:
        self._run = run
        self._waiting: set[str] = set()
        self._next: asyncio.Future[None] | None = None  # resolved by the round that takes them
        self._task: asyncio.Task[None] | None = None

    async def ask(self, keys: Iterable[str]) -> None:
        self._waiting.update(keys)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        waiting = self._next
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._rounds())
        await asyncio.shield(waiting)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _rounds(self) -> None:
        try:
            while self._waiting:
                keys, self._waiting = self._waiting, set()
                done, self._next = self._next, None
                assert done is not None
                try:
                    await self._run(keys)
                except BaseException as exc:
                    done.set_exception(exc)
                    done.exception()  # waiters re-raise it; nobody else needs to
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                done.set_result(None)
        finally:
            self._task = None
            if self._next is not None and not self._next.done():
                # Stopped (the loop is closing): nobody is left to answer these waiters.
                self._next.set_exception(RuntimeError("credential check stopped"))
                self._next.exception()
                self._next, self._waiting = None, set()
