"""The personal-data sections from Ferry's own tables: the embedded default source.

Rows come from server-side cursors (`AsyncSession.stream` with `yield_per`), so memory does
not grow with the number of rows. API keys appear masked (prefix and last four characters).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import ApiKey, AuditLog, BillingRecord, UsageRecord, User
from portability.accounts import mask_api_key
from portability.exports.sources import Subject

YIELD_PER = 2000


def _api_key(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "key": mask_api_key(row.prefix, row.last4),
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
    }


def _usage(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "bucket": row.bucket,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "storage_bytes": row.storage_bytes,
        "egress_bytes": row.egress_bytes,
        "ingress_bytes": row.ingress_bytes,
        "requests": row.requests,
    }


def _billing(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "invoice_number": row.invoice_number,
        "period_start": row.period_start,
        "period_end": row.period_end,
        "amount_cents": row.amount_cents,
        "currency": row.currency,
        "description": row.description,
        "status": row.status,
        "created_at": row.created_at,
    }


def _audit(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "created_at": row.created_at,
        "actor": row.actor,
        "action": row.action,
        "credential_id": row.credential_id,
        "bucket": row.bucket,
        "key": row.key,
        "status": row.status,
        "bytes": row.bytes,
        "duration_ms": row.duration_ms,
        "client_addr": row.client_addr,
        "user_agent": row.user_agent,
        "range": row.range,
        "details": row.details,
    }


def _profile(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "name": row.name,
        "is_admin": row.is_admin,
        "created_at": row.created_at,
    }


Query = tuple[Any, Callable[[sa.Row[Any]], dict[str, Any]]]


def _query(section: str, user_id: uuid.UUID) -> Query:
    if section == "profile":
        return sa.select(User.__table__).where(User.id == user_id), _profile
    if section == "api_keys":
        return (
            sa.select(
                ApiKey.id,
                ApiKey.name,
                ApiKey.prefix,
                ApiKey.last4,
                ApiKey.created_at,
                ApiKey.last_used_at,
                ApiKey.revoked_at,
            )
            .where(ApiKey.user_id == user_id)
            .order_by(ApiKey.created_at, ApiKey.id),
            _api_key,
        )
    if section == "usage":
        return (
            sa.select(UsageRecord.__table__)
            .where(UsageRecord.user_id == user_id)
            .order_by(UsageRecord.period_start, UsageRecord.id),
            _usage,
        )
    if section == "billing":
        return (
            sa.select(BillingRecord.__table__)
            .where(BillingRecord.user_id == user_id)
            .order_by(BillingRecord.period_start, BillingRecord.id),
            _billing,
        )
    if section == "audit_logs":
        # The (user_id, created_at) index serves this order without a sort.
        return (
            sa.select(AuditLog.__table__)
            .where(AuditLog.user_id == user_id)
            .order_by(AuditLog.created_at, AuditLog.id),
            _audit,
        )
    raise ValueError(f"no personal-data section {section!r}")


class FerryTables:
    """Every section from Ferry's database; one session (and cursor) per section."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def rows(self, section: str, subject: Subject) -> AsyncIterator[Mapping[str, Any]]:
        query, shape = _query(section, subject.id)
        async with self.sessions() as session:
            result = await session.stream(query.execution_options(yield_per=YIELD_PER))
            async for rows in result.partitions():
                for row in rows:
                    yield shape(row)
