"""What the gateway tells operators about each request: the request id logs carry, one access
log line and the Prometheus counters.

The counters live in prometheus_client's process-wide registry; the API's `/metrics` serves
them (the gateway's port speaks S3 only). Everything here reads the request's AccessEvent, the
one the audit writes, so a request is measured once.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Histogram

from gateway.audit import AccessEvent

# From a cached HEAD to a multi-GiB download at a throttled rate.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

REQUESTS = Counter(
    "ferry_gateway_requests",
    "S3 requests answered by the gateway, by S3 action and HTTP status.",
    ["action", "status"],
)
RESPONSE_BYTES = Counter(
    "ferry_gateway_response_bytes",
    "Object bytes the gateway streamed to clients (bodies of GetObject), by S3 action.",
    ["action"],
)
ERRORS = Counter(
    "ferry_gateway_errors",
    "S3 error answers of the gateway, by S3 error code.",
    ["code"],
)
DURATION = Histogram(
    "ferry_gateway_request_duration_seconds",
    "Gateway request duration, from the request line to the last body byte, by S3 action.",
    ["action"],
    buckets=DURATION_BUCKETS,
)

access_log = logging.getLogger("ferry.gateway.access")


# Each label set's child, found once: labels() checks and locks on every call, a sixth of
# what a request's accounting cost. Few sets: S3 actions, statuses and error codes.
_children: dict[tuple[object, ...], Any] = {}


def _child(metric: Counter | Histogram, *labels: str) -> Any:
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def report(
    event: AccessEvent, *, method: str, path: str, seconds: float, access_key_id: str | None
) -> None:
    """Count a finished request and write its access log line."""
    action = event.action
    _child(REQUESTS, action, str(event.status)).inc()
    if event.bytes:
        _child(RESPONSE_BYTES, action).inc(event.bytes)
    if event.error:
        _child(ERRORS, event.error).inc()
    _child(DURATION, action).observe(seconds)
    access_log.info(
        "%s %s %s %s %dB %dms",
        action,
        method,
        path,
        event.status,
        event.bytes,
        event.duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": event.status,
            "duration_ms": event.duration_ms,
            "action": action,
            "access_key_id": access_key_id,
            "bytes": event.bytes,
            "error": event.error,
            "client": event.client_addr,
        },
    )
