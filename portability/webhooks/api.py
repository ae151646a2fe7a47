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

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.models import User
from db.outbox import EVENTS
from portability.guard import DoorPolicy
from portability.http import Handler, authed, body_json
from portability.webhooks import service
from storage.egress import EgressPolicy
from sts.exceptions import InvalidRequest


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

    async def create(request: Request, session: AsyncSession, user: User) -> Response:
        body = await body_json(request)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        unknown = set(body) - {"url", "events", "all_users"}
        if unknown:
            raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
        url, events, all_users = service.check_webhook(
            body.get("url"),
            body.get("events", list(EVENTS)),
            body.get("all_users", False),
            admin=user.is_admin,
        )
        hook, secret = await service.create_webhook(
            session,
            master_key,
            user,
            url=url,
            events=events,
            all_users=all_users,
            egress=egress,
            now=clock(),
        )
        answer = {**service.describe(hook), "secret": secret}  # shown this once
        return JSONResponse(answer, status_code=201, headers={"cache-control": "no-store"})

    async def list_own(request: Request, session: AsyncSession, user: User) -> Response:
        hooks = await service.own_webhooks(session, user)
        return JSONResponse({"webhooks": [service.describe(h) for h in hooks]})

    async def delete(request: Request, session: AsyncSession, user: User) -> Response:
        hook = await service.own_webhook(session, user, request.path_params["webhook_id"])
        await session.delete(hook)
        return Response(status_code=204)

    async def deliveries(request: Request, session: AsyncSession, user: User) -> Response:
        hook = await service.own_webhook(session, user, request.path_params["webhook_id"])
        return JSONResponse({"deliveries": await service.deliveries(session, hook)})

    async def resend(request: Request, session: AsyncSession, user: User) -> Response:
        hook = await service.own_webhook(session, user, request.path_params["webhook_id"])
        answer = await service.resend(session, hook, request.path_params["delivery_id"], clock())
        return JSONResponse(answer, status_code=202)

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
