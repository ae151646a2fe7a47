"""The personal-data document (GDPR Art. 20): one JSON object, streamed row by row.

    {"format": "ferry-personal-data", "version": 1, "generated_at": "...",
     "subject": {...}, "api_keys": [...], "usage": [...], "billing": [...],
     "audit_logs": [...]}

Rows come from server-side cursors (`AsyncSession.stream` with `yield_per`) and each one is
encoded on its own with orjson, so memory does not grow with the number of rows: a user with
a million audit events costs the same as one with ten. API keys appear masked (prefix and
last four characters): the document must be safe to hand to anyone the user chooses.
The schema is `schema/personal-data.schema.json`, shipped in the package.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from importlib import resources
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import ApiKey, AuditLog, BillingRecord, UsageRecord, User
from portability.accounts import mask_api_key

FORMAT = "ferry-personal-data"
VERSION = 1
SCHEMA_FILE = "personal-data.schema.json"
_YIELD_PER = 2000
_FLUSH_AT = 256 * 1024
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC


def schema() -> dict[str, Any]:
    """The shipped JSON Schema of the document."""
    text = resources.files("portability.exports").joinpath("schema", SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


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


Section = tuple[str, Any, Callable[[sa.Row[Any]], dict[str, Any]]]


def _sections(user_id: uuid.UUID) -> Iterable[Section]:
    yield (
        "api_keys",
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
    yield (
        "usage",
        sa.select(UsageRecord.__table__)
        .where(UsageRecord.user_id == user_id)
        .order_by(UsageRecord.period_start, UsageRecord.id),
        _usage,
    )
    yield (
        "billing",
        sa.select(BillingRecord.__table__)
        .where(BillingRecord.user_id == user_id)
        .order_by(BillingRecord.period_start, BillingRecord.id),
        _billing,
    )
    yield (
        "audit_logs",
        # The (user_id, created_at) index serves this order without a sort.
        sa.select(AuditLog.__table__)
        .where(AuditLog.user_id == user_id)
        .order_by(AuditLog.created_at, AuditLog.id),
        _audit,
    )


async def personal_data(
    sessions: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    *,
    now: datetime,
    on_rows: Callable[[int], None] | None = None,
) -> AsyncIterator[bytes]:
    """The document as chunks of UTF-8 JSON of about 256 KiB."""
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise LookupError(f"no user {user_id}")
        head = {
            "format": FORMAT,
            "version": VERSION,
            "generated_at": now,
            "subject": {
                "id": user.id,
                "email": user.email,
                "name": user.name,
                "is_admin": user.is_admin,
                "created_at": user.created_at,
            },
        }
        buffer = bytearray(orjson.dumps(head, option=_OPTIONS)[:-1])  # drop the closing brace
        for name, query, shape in _sections(user_id):
            buffer += b',"' + name.encode() + b'":['
            first = True
            result = await session.stream(query.execution_options(yield_per=_YIELD_PER))
            async for rows in result.partitions():
                for row in rows:
                    if not first:
                        buffer += b","
                    first = False
                    buffer += orjson.dumps(shape(row), option=_OPTIONS)
                if on_rows is not None:
                    on_rows(len(rows))
                if len(buffer) >= _FLUSH_AT:
                    yield bytes(buffer)
                    buffer.clear()
            buffer += b"]"
        buffer += b"}\n"
        yield bytes(buffer)
