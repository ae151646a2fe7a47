"""Webhook endpoints as the API and the dashboard both manage them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import User, Webhook, WebhookDelivery, WebhookEvent
from db.outbox import EVENTS
from db.wakeup import mark_work
from portability.requests import iso
from portability.webhooks import signing
from portability.webhooks.delivery import PURPOSE
from storage.egress import EgressPolicy
from storage.validation import parse_decimal
from sts.exceptions import InvalidRequest, NotFound
from sts.sealing import seal_text

MAX_PER_USER = 20
URL_MAX = 2048


def describe(hook: Webhook) -> dict[str, Any]:
    return {
        "id": str(hook.id),
        "url": hook.url,
        "events": list(hook.events),
        "all_users": hook.all_users,
        "created_at": iso(hook.created_at),
    }


def describe_delivery(row: WebhookDelivery, event: WebhookEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_id": str(event.id),
        "event": event.type,
        "attempts": row.attempts,
        "last_status": row.last_status,
        "last_error": row.last_error,
        "last_attempt_at": iso(row.last_attempt_at),
        "next_attempt_at": None if row.delivered_at or row.gave_up_at else iso(row.next_attempt_at),
        "delivered_at": iso(row.delivered_at),
        "gave_up_at": iso(row.gave_up_at),
        "created_at": iso(row.created_at),
    }


def check_webhook(
    url: Any, events: Any, all_users: Any, *, admin: bool
) -> tuple[str, list[str], bool]:
    """The endpoint's fields, checked; InvalidRequest says what is wrong."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise InvalidRequest(f"url is required: an http(s) URL of at most {URL_MAX} characters")
    if urlsplit(url).scheme not in ("http", "https"):
        raise InvalidRequest("url must be an http:// or https:// URL")
    if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
        raise InvalidRequest(f"events must be a non-empty list of {', '.join(EVENTS)}")
    if not isinstance(all_users, bool):
        raise InvalidRequest("all_users must be true or false")
    if all_users and not admin:
        raise InvalidRequest("only an admin's endpoint may hear about all users")
    return url, list(dict.fromkeys(events)), all_users


async def create_webhook(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    *,
    url: str,
    events: Sequence[str],
    all_users: bool,
    egress: EgressPolicy,
    now: datetime,
) -> tuple[Webhook, str]:
    """A new endpoint and its signing secret (the caller shows it once)."""
    await egress.check_endpoint(url)
    count = await session.scalar(
        select(func.count()).select_from(Webhook).where(Webhook.user_id == user.id)
    )
    if (count or 0) >= MAX_PER_USER:
        raise InvalidRequest(f"at most {MAX_PER_USER} webhooks per user")
    hook_id = uuid.uuid4()
    secret = signing.new_secret()
    hook = Webhook(
        id=hook_id,
        user_id=user.id,
        url=url,
        events=list(events),
        all_users=all_users,
        secret_sealed=seal_text(master_key, PURPOSE, str(hook_id), secret),
        created_at=now,
    )
    session.add(hook)
    await session.flush()
    return hook, secret


async def own_webhooks(session: AsyncSession, user: User) -> list[Webhook]:
    rows = await session.scalars(
        select(Webhook).where(Webhook.user_id == user.id).order_by(Webhook.created_at)
    )
    return list(rows)


async def own_webhook(session: AsyncSession, user: User, hook_id: str) -> Webhook:
    try:
        found = await session.get(Webhook, uuid.UUID(hook_id))
    except ValueError:
        found = None
    if found is None or found.user_id != user.id:
        raise NotFound("no such webhook")
    return found


async def deliveries(
    session: AsyncSession, hook: Webhook, limit: int = 100
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(WebhookDelivery, WebhookEvent)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [describe_delivery(d, e) for d, e in rows.all()]


async def resend(
    session: AsyncSession, hook: Webhook, delivery_id: str, now: datetime
) -> dict[str, Any]:
    """Send a delivery again at once (the same event, the same `webhook-id`)."""
    try:
        number = parse_decimal(delivery_id)
    except ValueError:
        raise NotFound("no such delivery") from None
    row = await session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == number, WebhookDelivery.webhook_id == hook.id
        )
    )
    if row is None:
        raise NotFound("no such delivery")
    row.next_attempt_at = now
    row.delivered_at = None
    row.gave_up_at = None
    mark_work(session)
    event = await session.get(WebhookEvent, row.event_id)
    assert event is not None
    return describe_delivery(row, event)
