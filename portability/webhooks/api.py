"""REST routes of webhooks, mounted into the API app.

    POST   /api/webhooks                         201: a new endpoint; its secret shown once
    GET    /api/webhooks                         the caller's endpoints
    DELETE /api/webhooks/{id}                    204
    GET    /api/webhooks/{id}/deliveries         the delivery log, newest first
    POST   /api/webhooks/{id}/deliveries/{n}/resend   202: tried again at once

An endpoint hears about its owner's requests and credentials; an admin's endpoint with
`"all_users": true` hears about everyone's. Its URL goes through the egress policy when it is
registered and at every delivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.models import User, Webhook, WebhookDelivery, WebhookEvent
from db.outbox import EVENTS
from db.wakeup import mark_work
from portability.guard import DoorPolicy
from portability.http import ApiError, Handler, authed, body_json
from portability.requests import iso
from portability.webhooks import signing
from portability.webhooks.delivery import PURPOSE
from storage.egress import EgressPolicy
from storage.validation import parse_decimal
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


def _delivery(row: WebhookDelivery, event: WebhookEvent) -> dict[str, Any]:
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


def parse_webhook(body: Any, *, admin: bool) -> tuple[str, list[str], bool]:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid", "the body must be a JSON object")
    unknown = set(body) - {"url", "events", "all_users"}
    if unknown:
        raise ApiError(422, "invalid", f"unknown field(s): {', '.join(sorted(unknown))}")
    url = body.get("url")
    if not isinstance(url, str) or not url or len(url) > URL_MAX:
        raise ApiError(422, "invalid", f"url is required: an http(s) URL of at most {URL_MAX}")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ApiError(422, "invalid", "url must be an http:// or https:// URL")
    events = body.get("events", list(EVENTS))
    if not isinstance(events, list) or not events or not all(e in EVENTS for e in events):
        raise ApiError(422, "invalid", f"events must be a non-empty list of {', '.join(EVENTS)}")
    all_users = body.get("all_users", False)
    if not isinstance(all_users, bool):
        raise ApiError(422, "invalid", "all_users must be true or false")
    if all_users and not admin:
        raise ApiError(422, "invalid", "only an admin's endpoint may hear about all users")
    return url, list(dict.fromkeys(events)), all_users


def webhook_routes(
    *,
    sessions: async_sessionmaker[AsyncSession],
    master_key: bytes,
    egress: EgressPolicy,
    door: DoorPolicy,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    def guarded(handler: Handler) -> Callable[[Request], Any]:
        return authed(sessions, handler, door=door)

    async def own(session: AsyncSession, request: Request, user: User) -> Webhook:
        try:
            hook_id = uuid.UUID(request.path_params["webhook_id"])
        except ValueError:
            hook_id = None
        hook = await session.get(Webhook, hook_id) if hook_id else None
        if hook is None or hook.user_id != user.id:
            raise ApiError(404, "not_found", "no such webhook")
        return hook

    async def create(request: Request, session: AsyncSession, user: User) -> Response:
        url, events, all_users = parse_webhook(await body_json(request), admin=user.is_admin)
        await egress.check_endpoint(url)
        count = await session.scalar(
            select(func.count()).select_from(Webhook).where(Webhook.user_id == user.id)
        )
        if (count or 0) >= MAX_PER_USER:
            raise ApiError(409, "conflict", f"at most {MAX_PER_USER} webhooks per user")
        hook_id = uuid.uuid4()
        secret = signing.new_secret()
        hook = Webhook(
            id=hook_id,
            user_id=user.id,
            url=url,
            events=events,
            all_users=all_users,
            secret_sealed=seal_text(master_key, PURPOSE, str(hook_id), secret),
            created_at=clock(),
        )
        session.add(hook)
        await session.flush()
        answer = {**describe(hook), "secret": secret}  # shown this once
        return JSONResponse(answer, status_code=201, headers={"cache-control": "no-store"})

    async def list_own(request: Request, session: AsyncSession, user: User) -> Response:
        hooks = await session.scalars(
            select(Webhook).where(Webhook.user_id == user.id).order_by(Webhook.created_at)
        )
        return JSONResponse({"webhooks": [describe(h) for h in hooks]})

    async def delete(request: Request, session: AsyncSession, user: User) -> Response:
        await session.delete(await own(session, request, user))
        return Response(status_code=204)

    async def deliveries(request: Request, session: AsyncSession, user: User) -> Response:
        hook = await own(session, request, user)
        rows = await session.execute(
            select(WebhookDelivery, WebhookEvent)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.webhook_id == hook.id)
            .order_by(WebhookDelivery.id.desc())
            .limit(100)
        )
        return JSONResponse({"deliveries": [_delivery(d, e) for d, e in rows.all()]})

    async def resend(request: Request, session: AsyncSession, user: User) -> Response:
        hook = await own(session, request, user)
        try:
            number = parse_decimal(request.path_params["delivery_id"])
        except ValueError:
            raise ApiError(404, "not_found", "no such delivery") from None
        row = await session.scalar(
            select(WebhookDelivery).where(
                WebhookDelivery.id == number, WebhookDelivery.webhook_id == hook.id
            )
        )
        if row is None:
            raise ApiError(404, "not_found", "no such delivery")
        row.next_attempt_at = clock()
        row.delivered_at = None
        row.gave_up_at = None
        mark_work(session)
        event = await session.get(WebhookEvent, row.event_id)
        assert event is not None
        return JSONResponse(_delivery(row, event), status_code=202)

    return [
        Route("/api/webhooks", guarded(create), methods=["POST"]),
        Route("/api/webhooks", guarded(list_own), methods=["GET"]),
        Route("/api/webhooks/{webhook_id}", guarded(delete), methods=["DELETE"]),
        Route("/api/webhooks/{webhook_id}/deliveries", guarded(deliveries), methods=["GET"]),
        Route(
            "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
            guarded(resend),
            methods=["POST"],
        ),
    ]
