"""The REST API (port 8000). JSON in, JSON out; errors as {"error": {"code", "message"}}.

Authentication is `Authorization: Bearer <api key>`; admin routes need an admin's key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.models import User
from portability import events
from portability.credentials import (
    GatewayAddress,
    describe,
    issue_for_user,
    parse_issue_request,
    parse_rotate_request,
    rotate_for_user,
)
from portability.dashboard import dashboard_routes
from portability.dashboard.session_store import end_all_sessions
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from portability.http import Handler, RouteEndpoint, authed, body_json, error
from portability.metrics import REQUEST_ID, RequestIdMiddleware, metrics_endpoint
from portability.openapi import docs_page, openapi_json
from portability.requests_api import request_routes
from portability.webhooks.api import webhook_routes
from storage.base import Storage
from storage.egress import EgressPolicy
from sts import issue as sts
from sts.exceptions import NotFound
from sts.issue import TTL_MAX

log = logging.getLogger("ferry.api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, _CODES.get(exc.status_code, "error"), exc.detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    # The trace goes to the log, never to the client.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    answer = error(500, "internal", "internal server error")
    request_id = REQUEST_ID.get()  # answered outside RequestIdMiddleware, which leaves it set
    if request_id:
        answer.headers["x-request-id"] = request_id
    return answer


def build_api_app(
    *,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    master_key: bytes,
    endpoint: GatewayAddress,
    export_settings: ExportSettings | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    metrics_token: str = "",
    egress: EgressPolicy | None = None,
    door: DoorPolicy | None = None,
    max_ttl_seconds: int = TTL_MAX,
    public_url: str = "",
) -> Starlette:
    # Without a policy, user-supplied endpoints may only be public addresses.
    egress = egress or EgressPolicy()
    door = door or DoorPolicy()

    def guarded(handler: Handler, *, admin: bool = False) -> RouteEndpoint:
        return authed(sessions, handler, admin=admin, door=door)

    def client(request: Request) -> dict[str, Any]:
        return {
            "client_addr": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent"),
        }

    async def health(request: Request) -> Response:
        checks: dict[str, Any] = {}
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
        except Exception as exc:  # any failure is "unhealthy", reported as such
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        try:
            await storage.ping()
            checks["storage"] = {"ok": True}
        except Exception as exc:
            checks["storage"] = {"ok": False, "error": str(exc) or type(exc).__name__}
        healthy = all(c["ok"] for c in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", **checks},
            status_code=200 if healthy else 503,
        )

    async def issue_credential(request: Request, session: AsyncSession, user: User) -> Response:
        bucket, issue_request = parse_issue_request(
            await body_json(request), max_ttl_seconds=max_ttl_seconds
        )
        answer = await issue_for_user(
            session, master_key, user, bucket, issue_request, endpoint=endpoint, now=clock()
        )
        return JSONResponse(answer, status_code=201, headers={"cache-control": "no-store"})

    async def rotate_own(request: Request, session: AsyncSession, user: User) -> Response:
        grace = parse_rotate_request(await body_json(request))
        answer = await rotate_for_user(
            session,
            master_key,
            user,
            request.path_params["access_key_id"],
            grace_seconds=grace,
            endpoint=endpoint,
            now=clock(),
        )
        return JSONResponse(answer, headers={"cache-control": "no-store"})

    async def list_own(request: Request, session: AsyncSession, user: User) -> Response:
        active = request.query_params.get("active") == "true"
        now = clock()
        rows = await sts.list_credentials(session, now=now, user_id=user.id, active_only=active)
        return JSONResponse({"credentials": [describe(c, b, endpoint, now) for c, b in rows]})

    async def revoke_own(request: Request, session: AsyncSession, user: User) -> Response:
        access_key_id = request.path_params["access_key_id"]
        credential = await sts.revoke(session, access_key_id, now=clock(), user_id=user.id)
        events.record(
            session,
            actor="user",
            action="credentials.revoke",
            user_id=user.id,
            credential_id=credential.id,
            details={"access_key_id": access_key_id},
            **client(request),
        )
        return Response(status_code=204)

    async def admin_list(request: Request, session: AsyncSession, admin: User) -> Response:
        active = request.query_params.get("active") == "true"
        who = request.query_params.get("user")
        user_id = None
        if who:
            target = await _find_user(session, who)
            user_id = target.id
        now = clock()
        rows = await sts.list_credentials(session, now=now, user_id=user_id, active_only=active)
        return JSONResponse({"credentials": [describe(c, b, endpoint, now) for c, b in rows]})

    async def admin_revoke(request: Request, session: AsyncSession, admin: User) -> Response:
        access_key_id = request.path_params["access_key_id"]
        now = clock()
        revoked = await sts.revoke(session, access_key_id, now=now)
        events.record(
            session,
            actor="admin",
            action="credentials.revoke",
            user_id=revoked.user_id,
            credential_id=revoked.id,
            details={"access_key_id": access_key_id, "admin": admin.email},
            **client(request),
        )
        credential, bucket = await sts.find(session, access_key_id)
        return JSONResponse(describe(credential, bucket, endpoint, now))

    async def admin_revoke_user(request: Request, session: AsyncSession, admin: User) -> Response:
        target = await _find_user(session, request.path_params["user_id"])
        count = await sts.revoke_all(session, target.id, now=clock())
        events.record(
            session,
            actor="admin",
            action="credentials.revoke_all",
            user_id=target.id,
            details={"revoked": count, "admin": admin.email},
            **client(request),
        )
        return JSONResponse({"user_id": str(target.id), "revoked": count})

    async def admin_sign_out(request: Request, session: AsyncSession, admin: User) -> Response:
        target = await _find_user(session, request.path_params["user_id"])
        ended = await end_all_sessions(session, target.id, clock())
        events.record(
            session,
            actor="admin",
            action="dashboard.sign_out_everywhere",
            user_id=target.id,
            details={"ended": ended, "admin": admin.email},
            **client(request),
        )
        return JSONResponse({"user_id": str(target.id), "ended_sessions": ended})

    routes = [
        Route("/api/health", health),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/docs", docs_page, methods=["GET"]),
        Route("/api/portability/credentials", guarded(issue_credential), methods=["POST"]),
        Route("/api/portability/credentials", guarded(list_own), methods=["GET"]),
        Route(
            "/api/portability/credentials/{access_key_id}",
            guarded(revoke_own),
            methods=["DELETE"],
        ),
        Route(
            "/api/portability/credentials/{access_key_id}/rotate",
            guarded(rotate_own),
            methods=["POST"],
        ),
        Route("/api/admin/credentials", guarded(admin_list, admin=True), methods=["GET"]),
        Route(
            "/api/admin/credentials/{access_key_id}/revoke",
            guarded(admin_revoke, admin=True),
            methods=["POST"],
        ),
        Route(
            "/api/admin/users/{user_id}/revoke-credentials",
            guarded(admin_revoke_user, admin=True),
            methods=["POST"],
        ),
        Route(
            "/api/admin/users/{user_id}/sign-out",
            guarded(admin_sign_out, admin=True),
            methods=["POST"],
        ),
    ]
    routes += request_routes(
        sessions=sessions,
        storage=storage,
        master_key=master_key,
        settings=export_settings
        or ExportSettings(gateway_url=endpoint.url, region=endpoint.region),
        endpoint=endpoint,
        egress=egress,
        door=door,
        clock=clock,
    )
    routes += webhook_routes(
        sessions=sessions, master_key=master_key, egress=egress, door=door, clock=clock
    )
    # The dashboard: server-rendered pages on the same port.
    routes += dashboard_routes(
        sessions,
        storage,
        master_key,
        endpoint,
        export_settings,
        clock=clock,
        egress=egress,
        door=door,
        max_ttl_seconds=max_ttl_seconds,
        public_url=public_url,
    )
    # Prometheus' text format, outside /api: not part of the JSON API.
    routes.append(Route("/metrics", metrics_endpoint(sessions, token=metrics_token, clock=clock)))
    return Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )


async def _find_user(session: AsyncSession, who: str) -> User:
    """A user by id or email."""
    if "\x00" in who:  # PostgreSQL text cannot hold it: nobody is called that
        raise NotFound(f"no user {who!r}")
    try:
        user = await session.get(User, uuid.UUID(who))
    except ValueError:
        user = await session.scalar(select(User).where(User.email == who.strip().lower()))
    if user is None:
        raise NotFound(f"no user {who}")
    return user
