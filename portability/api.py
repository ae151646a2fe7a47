"""The REST API (port 8000). JSON in, JSON out; errors as {"error": {"code", "message"}}.

Authentication is `Authorization: Bearer <api key>`; admin routes need an admin's key. The
operations (handlers, models, documentation) are listed in `portability.openapi.OPERATIONS`;
their dependencies live on `app.state.api` (`portability.state.ApiState`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from portability.credentials import GatewayAddress
from portability.dashboard import dashboard_routes
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from portability.http import error
from portability.metrics import RequestIdMiddleware, metrics_endpoint
from portability.openapi import OPERATIONS
from portability.request_id import REQUEST_ID
from portability.state import ApiState, utcnow
from storage.base import Storage
from storage.egress import EgressPolicy
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
    clock: Callable[[], datetime] = utcnow,
    metrics_token: str = "",
    egress: EgressPolicy | None = None,
    door: DoorPolicy | None = None,
    max_ttl_seconds: int = TTL_MAX,
    public_url: str = "",
) -> Starlette:
    state = ApiState(
        engine=engine,
        sessions=sessions,
        storage=storage,
        master_key=master_key,
        endpoint=endpoint,
        export_settings=export_settings
        or ExportSettings(gateway_url=endpoint.url, region=endpoint.region),
        egress=egress or EgressPolicy(),
        door=door or DoorPolicy(),
        clock=clock,
        max_ttl_seconds=max_ttl_seconds,
    )
    routes: list[BaseRoute] = [operation.route() for operation in OPERATIONS]
    # The dashboard: server-rendered pages on the same port.
    routes += dashboard_routes(
        sessions,
        storage,
        master_key,
        endpoint,
        export_settings,
        clock=clock,
        egress=state.egress,
        door=state.door,
        max_ttl_seconds=max_ttl_seconds,
        public_url=public_url,
    )
    # Prometheus' text format, outside /api: not part of the JSON API.
    routes.append(Route("/metrics", metrics_endpoint(sessions, token=metrics_token, clock=clock)))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.api = state
    return app
