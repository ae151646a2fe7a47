"""Events for webhooks, written in the transaction of the state change they announce.

`emit` adds one `webhook_events` row beside the change: if the transaction commits, the
event exists and will be delivered (at least once, by the webhook worker); if it rolls back,
neither happened. Payloads carry what identifies the resource and its new state, never a
secret or a working download link (the outbox is data at rest).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from db.models import PortabilityRequest, WebhookEvent
from db.wakeup import mark_work

REQUEST_EVENTS = (
    "request.ready",
    "request.completed",
    "request.failed",
    "request.expired",
    "request.cancelled",
)
CREDENTIAL_EVENTS = ("credential.revoked", "credential.expired")
EVENTS = REQUEST_EVENTS + CREDENTIAL_EVENTS


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def emit(
    session: AsyncSession, event: str, *, user_id: uuid.UUID | None, data: dict[str, Any]
) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    now = datetime.now(UTC)
    session.add(
        WebhookEvent(
            id=uuid.uuid4(),
            type=event,
            user_id=user_id,
            payload={"type": event, "timestamp": _iso(now), "data": data},
            created_at=now,
        )
    )
    mark_work(session)


def request_event(session: AsyncSession, event: str, request: PortabilityRequest) -> None:
    emit(
        session,
        event,
        user_id=request.user_id,
        data={
            "id": str(request.id),
            "user_id": str(request.user_id),
            "request_type": request.request_type,
            "status": request.status,
            "format": request.format,
            "created_at": _iso(request.created_at),
            "completed_at": _iso(request.completed_at),
            "expires_at": _iso(request.expires_at),
        },
    )


def credential_event(
    session: AsyncSession,
    event: str,
    *,
    access_key_id: str,
    user_id: uuid.UUID,
    at: datetime,
) -> None:
    emit(
        session,
        event,
        user_id=user_id,
        data={
            "access_key_id": access_key_id,
            "user_id": str(user_id),
            "status": "revoked" if event == "credential.revoked" else "expired",
            "at": _iso(at),
        },
    )
