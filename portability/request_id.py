"""The id of the API or dashboard request being served: every log line inside it carries it.
Its own module, so that setting up logging does not import the API."""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("ferry_api_request_id", default=None)
