"""The API's request id and access log, and Prometheus metrics at `GET /metrics`.

`/metrics` is served on the API port but is not part of the JSON API: it answers in
Prometheus' text format. Without `[api] metrics_token` it answers loopback clients only; with
it, anyone presenting the token as a bearer. It serves the process-wide registry (the gateway's
counters and the API's, since `ferry serve` runs both in one process) and, read from the
database at scrape time, gauges of credentials, requests and running work.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.models import Credential, PortabilityRequest, TransferJob
from portability.http import RouteEndpoint, error
from portability.request_id import REQUEST_ID
from portability.requests import PROCESSING

log = logging.getLogger("ferry.api.metrics")
access_log = logging.getLogger("ferry.api.access")

# An incoming X-Request-Id (set by a proxy in front) is kept only in this shape: it goes into
# log lines and a response header, so no spaces, quotes or control characters, and bounded.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{8,64}")
# Anything else a client sends as a method is one label value, not a new time series.
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

API_REQUESTS = Counter(
    "ferry_api_requests",
    "API and dashboard requests, by method, route template and HTTP status.",
    ["method", "route", "status"],
)
API_DURATION = Histogram(
    "ferry_api_request_duration_seconds",
    "API and dashboard request duration, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class RequestIdMiddleware:
    """Give each request an id (`x-request-id` on the answer), count it, log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or secrets.token_hex(8).upper()
        id_token = REQUEST_ID.set(request_id)
        started = time.monotonic()
        status = 500  # what the client gets when the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._report(scope, status, time.monotonic() - started)
        # Not reset when the app raised: Starlette's outermost middleware logs and answers that
        # error after us, in this same task, and its log line and its 500 should carry the id.
        REQUEST_ID.reset(id_token)

    @staticmethod
    def _report(scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "other"
        API_REQUESTS.labels(method, route, str(status)).inc()
        API_DURATION.labels(route).observe(seconds)
        # The raw path: percent-decoding could put a line break into a text log line.
        path = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
        path_text = path.decode("latin-1")
        duration_ms = int(seconds * 1000)
        access_log.info(
            "%s %s %s %dms",
            scope["method"],
            path_text,
            status,
            duration_ms,
            extra={
                "method": scope["method"],
                "path": path_text,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
            },
        )


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _WELL_FORMED.fullmatch(text) else None
    return None


def metrics_endpoint(
    sessions: async_sessionmaker[AsyncSession],
    *,
    token: str = "",
    clock: Callable[[], datetime],
) -> RouteEndpoint:
    """`GET /metrics`: the process's counters and the database's gauges, in text format."""

    async def endpoint(request: Request) -> Response:
        refusal = _refusal(request, token)
        if refusal is not None:
            return refusal
        body = generate_latest(_process_counters()) + generate_latest(
            _Snapshot(await _database_gauges(sessions, clock()))
        )
        return Response(body, headers={"content-type": CONTENT_TYPE_LATEST})

    return endpoint


def _process_counters() -> CollectorRegistry:
    """This process's counters; under `ferry serve --processes N` (PROMETHEUS_MULTIPROC_DIR
    set by the parent) every process's, summed: any process may answer the scrape."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def _refusal(request: Request, token: str) -> Response | None:
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return None
        answer = error(401, "unauthorized", "/metrics needs the [api] metrics_token as bearer")
        answer.headers["www-authenticate"] = 'Bearer realm="metrics"'
        return answer
    if request.client is not None and _is_loopback(request.client.host):
        return None
    return error(
        403, "forbidden", "/metrics answers loopback clients only unless [api] metrics_token is set"
    )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Snapshot(Collector):
    """Gauges read once for one scrape, in the shape generate_latest() takes."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


async def _database_gauges(
    sessions: async_sessionmaker[AsyncSession], now: datetime
) -> list[Metric]:
    up = GaugeMetricFamily(
        "ferry_metrics_database_up", "1 when the database gauges below could be read."
    )
    try:
        async with sessions() as session:
            gauges = [
                await _credentials(session, now),
                await _requests(session),
                *await _running_transfers(session),
                *await _running_exports(session),
            ]
    except Exception as exc:  # a scrape still serves the process's counters
        log.warning("metrics: cannot read the database: %s", type(exc).__name__)
        up.add_metric([], 0)
        return [up]
    up.add_metric([], 1)
    return [up, *gauges]


async def _credentials(session: AsyncSession, now: datetime) -> Metric:
    c = Credential
    expired = and_(c.revoked_at.is_(None), c.expires_at <= now)
    # Conditional sums rather than GROUP BY a CASE: the CASE's bound `now` would be two
    # parameters in PostgreSQL's eyes, and the grouping would not match the selection.
    query = select(
        c.kind,
        func.count(),
        func.count(c.revoked_at),
        func.coalesce(func.sum(case((expired, 1), else_=0)), 0),
    ).group_by(c.kind)
    gauge = GaugeMetricFamily(
        "ferry_credentials",
        "Issued S3 credentials by kind (user, export) and state (active, revoked, expired).",
        labels=["kind", "state"],
    )
    for kind, total, revoked, expired_count in (await session.execute(query)).all():
        gauge.add_metric([kind, "active"], total - revoked - expired_count)
        gauge.add_metric([kind, "revoked"], revoked)
        gauge.add_metric([kind, "expired"], expired_count)
    return gauge


async def _requests(session: AsyncSession) -> Metric:
    r = PortabilityRequest
    query = select(r.request_type, r.status, func.count()).group_by(r.request_type, r.status)
    gauge = GaugeMetricFamily(
        "ferry_portability_requests",
        "Portability requests by type (export, transfer) and status.",
        labels=["type", "status"],
    )
    for request_type, status, count in (await session.execute(query)).all():
        gauge.add_metric([request_type, status], count)
    return gauge


async def _running_transfers(session: AsyncSession) -> list[Metric]:
    j = TransferJob
    query = (
        select(
            func.coalesce(func.sum(j.bytes_done), 0),
            func.coalesce(func.sum(j.bytes_total), 0),
            func.coalesce(func.sum(j.objects_copied + j.objects_skipped + j.objects_failed), 0),
            func.coalesce(func.sum(j.objects_total), 0),
        )
        .join(PortabilityRequest, PortabilityRequest.id == j.request_id)
        .where(PortabilityRequest.status == PROCESSING)
    )
    row = (await session.execute(query)).one()
    return _progress("transfers", "copied to the target (parts of objects in flight included)", row)


async def _running_exports(session: AsyncSession) -> list[Metric]:
    r = PortabilityRequest
    # Export progress lives in each request's JSON metadata; only running ones are read.
    query = select(r.meta).where(r.request_type == "export", r.status == PROCESSING)
    sums = [0, 0, 0, 0]
    for meta in (await session.scalars(query)).all():
        progress: dict[str, Any] = (meta or {}).get("progress") or {}
        for i, name in enumerate(("bytes_done", "bytes_total", "objects_done", "objects_total")):
            value = progress.get(name)
            sums[i] += value if isinstance(value, int) else 0
    return _progress("exports", "written into export archives", sums)


def _progress(what: str, done: str, values: Iterable[int]) -> list[Metric]:
    bytes_done, bytes_planned, objects_done, objects_planned = values
    summed = f"summed over running {what}"
    return [
        _gauge(f"ferry_running_{what}_bytes_done", f"Bytes {done}, {summed}.", bytes_done),
        _gauge(
            f"ferry_running_{what}_bytes_planned", f"Bytes to do in all, {summed}.", bytes_planned
        ),
        _gauge(f"ferry_running_{what}_objects_done", f"Objects finished, {summed}.", objects_done),
        _gauge(
            f"ferry_running_{what}_objects_planned",
            f"Objects to do in all, {summed}.",
            objects_planned,
        ),
    ]


def _gauge(name: str, documentation: str, value: float) -> Metric:
    gauge = GaugeMetricFamily(name, documentation)
    gauge.add_metric([], value)
    return gauge
