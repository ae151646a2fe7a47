"""Audit rows for what users and admins do through the API and CLI (the gateway has its own)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditLog


def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    user_id: uuid.UUID | None,
    credential_id: uuid.UUID | None = None,
    bucket: str | None = None,
    status: int | None = None,
    client_addr: str | None = None,
    user_agent: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditLog(
            created_at=datetime.now(UTC),
            user_id=user_id,
            credential_id=credential_id,
            actor=actor,
            action=action,
            bucket=bucket,
            status=status,
            client_addr=client_addr,
            user_agent=user_agent,
            details=details,
        )
    )
