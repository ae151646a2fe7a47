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

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import User
from portability.contract.operations import Operation, Param, Reply
from portability.contract.webhooks import (
    CreatedWebhook,
    Delivery,
    DeliveryList,
    NewWebhook,
    WebhookList,
)
from portability.http import read_model
from portability.state import api_state
from portability.webhooks import service

WEBHOOK_ID = Param("webhook_id", "The webhook's id (a UUID).")
DELIVERY_ID = Param("delivery_id", "The delivery's number, from the delivery log.")


async def create(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    body = await read_model(request, NewWebhook)
    url, events, all_users = service.check_webhook(
        body.url, body.events, body.all_users, admin=user.is_admin
    )
    hook, secret = await service.create_webhook(
        session,
        state.master_key,
        user,
        url=url,
        events=events,
        all_users=all_users,
        egress=state.egress,
        now=state.clock(),
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
    now = api_state(request).clock()
    answer = await service.resend(session, hook, request.path_params["delivery_id"], now)
    return JSONResponse(answer, status_code=202)


OPERATIONS = [
    Operation(
        "post",
        "/api/webhooks",
        "createWebhook",
        "webhooks",
        "Register an endpoint for signed events (the secret is shown once)",
        create,
        {201: Reply(CreatedWebhook, "Registered.")},
        body=(NewWebhook,),
    ),
    Operation(
        "get",
        "/api/webhooks",
        "listWebhooks",
        "webhooks",
        "The caller's endpoints",
        list_own,
        {200: Reply(WebhookList, "The endpoints.")},
    ),
    Operation(
        "delete",
        "/api/webhooks/{webhook_id}",
        "deleteWebhook",
        "webhooks",
        "Remove an endpoint and its delivery log",
        delete,
        {204: Reply(None, "Removed.")},
        ("NotFound",),
        parameters=(WEBHOOK_ID,),
    ),
    Operation(
        "get",
        "/api/webhooks/{webhook_id}/deliveries",
        "listWebhookDeliveries",
        "webhooks",
        "The delivery log: attempts, last status, next try (newest first)",
        deliveries,
        {200: Reply(DeliveryList, "The last 100 deliveries.")},
        ("NotFound",),
        parameters=(WEBHOOK_ID,),
    ),
    Operation(
        "post",
        "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
        "resendWebhookDelivery",
        "webhooks",
        "Send a delivery again at once (the same `webhook-id`)",
        resend,
        {202: Reply(Delivery, "Queued.")},
        ("NotFound",),
        parameters=(WEBHOOK_ID, DELIVERY_ID),
    ),
]
