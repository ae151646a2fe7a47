"""The models on a real migrated database (PostgreSQL with FERRY_TEST_DATABASE_URL, else SQLite)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import migrate
from db.engine import ping
from db.models import (
    ApiKey,
    AuditLog,
    BillingRecord,
    Bucket,
    Credential,
    PortabilityRequest,
    UsageRecord,
    User,
)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _user(session: AsyncSession) -> User:
    user = User(email=f"{_unique('u')}@example.com", name="Alice")
    session.add(user)
    await session.flush()
    return user


async def _bucket(session: AsyncSession, owner: User) -> Bucket:
    bucket = Bucket(name=_unique("b"), owner_id=owner.id, backend_bucket="store")
    session.add(bucket)
    await session.flush()
    return bucket


def _credential(user: User, bucket: Bucket, **kw: object) -> Credential:
    fields: dict[str, object] = {
        "access_key_id": "FRY" + uuid.uuid4().hex[:17].upper(),
        "user_id": user.id,
        "bucket_id": bucket.id,
        "secret_sealed": b"\x00nonce+ciphertext+tag",
        "prefixes": ["photos/"],
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
    }
    fields.update(kw)
    return Credential(**fields)


async def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    assert migrate.diff(database_url) == []
    assert migrate.current(database_url) == migrate.head()


async def test_ping(engine: AsyncEngine) -> None:
    await ping(engine)


async def test_rows_round_trip_with_defaults_and_aware_datetimes(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    api_key = "fk_live_" + "x" * 32
    async with db_sessions() as session, session.begin():
        user = await _user(session)
        bucket = await _bucket(session, user)
        session.add(
            ApiKey(
                user_id=user.id,
                name="laptop",
                key_hash=hashlib.sha256(api_key.encode()).hexdigest(),
                prefix=api_key[:12],
                last4=api_key[-4:],
            )
        )
        credential = _credential(user, bucket, allowed_cidrs=None, session_token_hash="ab" * 32)
        request = PortabilityRequest(
            user_id=user.id,
            request_type="export",
            status="pending",
            format="archive",
            meta={"progress": {"bytes_done": 0}, "parts": []},
        )
        session.add_all([credential, request])
        session.add(
            AuditLog(
                user_id=user.id,
                credential_id=credential.id,
                actor="gateway",
                action="GetObject",
                bucket=bucket.name,
                key="photos/2024/ä ö.jpg",
                status=206,
                bytes=5 * 2**40,  # beyond 32 bits
                duration_ms=12,
                client_addr="2001:db8::1",
                user_agent="aws-cli/2.15",
                range="bytes=0-99",
                details={"request_id": "r1"},
            )
        )

    async with db_sessions() as session:
        got_user = await session.get(User, user.id)
        assert got_user is not None
        assert got_user.is_admin is False
        assert got_user.created_at.tzinfo is not None
        assert got_user.created_at.utcoffset() == timedelta(0)
        assert abs(datetime.now(UTC) - got_user.created_at) < timedelta(minutes=1)

        got_bucket = await session.get(Bucket, bucket.id)
        assert got_bucket is not None and got_bucket.backend_prefix == ""

        key = (await session.scalars(sa.select(ApiKey).where(ApiKey.user_id == user.id))).one()
        assert key.key_hash == hashlib.sha256(api_key.encode()).hexdigest()
        assert (key.prefix, key.last4, key.revoked_at) == ("fk_live_xxxx", "xxxx", None)

        cred = await session.get(Credential, credential.id)
        assert cred is not None
        assert cred.kind == "user" and cred.permission == "read-only"
        assert cred.prefixes == ["photos/"]
        assert cred.secret_sealed == b"\x00nonce+ciphertext+tag"
        assert (cred.bytes_served, cred.objects_served, cred.requests_served) == (0, 0, 0)
        assert cred.expires_at == credential.expires_at
        assert cred.expires_at.tzinfo is not None and cred.not_before.tzinfo is not None
        # A Python None is SQL NULL, so "no CIDR list" is found with IS NULL.
        no_cidrs = await session.scalar(
            sa.select(sa.func.count())
            .select_from(Credential)
            .where(Credential.id == credential.id, Credential.allowed_cidrs.is_(None))
        )
        assert no_cidrs == 1

        req = await session.get(PortabilityRequest, request.id)
        assert req is not None
        assert req.meta == {"progress": {"bytes_done": 0}, "parts": []}
        assert req.created_at is not None and req.created_at.utcoffset() == timedelta(0)
        assert req.completed_at is None

        audit = (
            await session.scalars(sa.select(AuditLog).where(AuditLog.user_id == user.id))
        ).one()
        assert isinstance(audit.id, int) and audit.id > 0
        assert audit.key == "photos/2024/ä ö.jpg"
        assert audit.bytes == 5 * 2**40
        assert audit.details == {"request_id": "r1"}


async def test_audit_ids_increase(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessions() as session, session.begin():
        rows = [AuditLog(actor="system", action="login") for _ in range(3)]
        session.add_all(rows)
    ids = [row.id for row in rows]
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_datetimes_in_other_zones_come_back_as_the_same_instant_in_utc(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    tokyo = timezone(timedelta(hours=9))
    start = datetime(2026, 1, 1, 9, 0, 0, 123456, tzinfo=tokyo)
    async with db_sessions() as session, session.begin():
        user = await _user(session)
        record = UsageRecord(
            user_id=user.id,
            bucket="b",
            period_start=start,
            period_end=start + timedelta(days=31),
            storage_bytes=2**40,
        )
        session.add(record)
    async with db_sessions() as session:
        got = await session.get(UsageRecord, record.id)
        assert got is not None
        assert got.period_start == start
        assert got.period_start.tzinfo == UTC
        assert got.period_start.hour == 0
        assert (got.egress_bytes, got.requests) == (0, 0)
        # Range queries compare instants, not local wall-clock text.
        found = await session.scalar(
            sa.select(UsageRecord.id).where(
                UsageRecord.user_id == user.id,
                UsageRecord.period_start >= datetime(2025, 12, 31, 23, 59, tzinfo=UTC),
                UsageRecord.period_start < datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
            )
        )
        assert found == record.id


async def test_naive_datetimes_are_refused(db_session: AsyncSession) -> None:
    user = await _user(db_session)
    db_session.add(
        PortabilityRequest(
            user_id=user.id,
            request_type="export",
            status="pending",
            expires_at=datetime(2026, 1, 1, 12, 0),  # naive: the point of the test
        )
    )
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        await db_session.flush()
    await db_session.rollback()


@pytest.mark.parametrize("column", ["email", "key_hash", "access_key_id", "bucket", "invoice"])
async def test_unique_constraints_hold(
    db_sessions: async_sessionmaker[AsyncSession], column: str
) -> None:
    async with db_sessions() as session, session.begin():
        user = await _user(session)
        bucket = await _bucket(session, user)
        cred = _credential(user, bucket)
        session.add(cred)
        invoice = BillingRecord(
            user_id=user.id,
            invoice_number=_unique("INV"),
            period_start=datetime(2026, 1, 1, tzinfo=UTC),
            period_end=datetime(2026, 2, 1, tzinfo=UTC),
            amount_cents=1999,
            currency="EUR",
        )
        api_key = ApiKey(user_id=user.id, key_hash=_unique("h"), prefix="fk_", last4="abcd")
        session.add_all([invoice, api_key])

    duplicate: object
    if column == "email":
        duplicate = User(email=user.email)
    elif column == "key_hash":
        duplicate = ApiKey(user_id=user.id, key_hash=api_key.key_hash, prefix="x", last4="y")
    elif column == "access_key_id":
        duplicate = _credential(user, bucket, access_key_id=cred.access_key_id)
    elif column == "bucket":
        duplicate = Bucket(name=bucket.name, owner_id=user.id, backend_bucket="other")
    else:
        duplicate = BillingRecord(
            user_id=user.id,
            invoice_number=invoice.invoice_number,
            period_start=invoice.period_start,
            period_end=invoice.period_end,
            amount_cents=1,
            currency="EUR",
            status="paid",
        )
    async with db_sessions() as session:
        session.add(duplicate)
        with pytest.raises(sa.exc.IntegrityError):
            await session.flush()
        await session.rollback()


async def test_foreign_keys_and_checks_are_enforced(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with db_sessions() as session, session.begin():
        user = await _user(session)
        bucket = await _bucket(session, user)

    # SQLite enforces foreign keys only when the engine turns them on per connection.
    bad_rows = [
        _credential(user, bucket, bucket_id=uuid.uuid4()),
        PortabilityRequest(user_id=uuid.uuid4(), request_type="export", status="pending"),
        _credential(user, bucket, permission="read-write"),
        _credential(user, bucket, kind="admin"),
    ]
    for row in bad_rows:
        async with db_sessions() as session:
            session.add(row)
            with pytest.raises(sa.exc.IntegrityError):
                await session.flush()
            await session.rollback()


async def test_deleting_a_user_keeps_the_audit_trail(
    db_sessions: async_sessionmaker[AsyncSession],
) -> None:
    gone_credential = uuid.uuid4()  # no foreign key: the trail outlives credentials
    async with db_sessions() as session, session.begin():
        user = await _user(session)
        audit = AuditLog(
            user_id=user.id, credential_id=gone_credential, actor="user", action="login"
        )
        session.add(audit)
    async with db_sessions() as session, session.begin():
        await session.execute(sa.delete(User).where(User.id == user.id))
    async with db_sessions() as session:
        got = await session.get(AuditLog, audit.id)
        assert got is not None
        assert got.user_id is None and got.credential_id == gone_credential
