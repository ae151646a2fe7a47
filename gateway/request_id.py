"""The S3 x-amz-request-id of the gateway request being served: every log line inside it
carries it. Its own module, so that setting up logging does not import the gateway."""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("ferry_gateway_request_id", default=None)
