"""The REST API's OpenAPI 3.1 document, generated from its operations, and its reference page.

Every operation is declared once (`portability.contract.operations.Operation`) beside its
handler; the app serves `operation.route()` and this module builds the document from the
same list, the schemas from the operations' pydantic models. tests/integration/
test_openapi.py runs schemathesis against a served Ferry to check the answers match it. The
dashboard's HTML pages are not part of the API and are not described here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from pydantic import ConfigDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from portability import admin_api, credentials_api, requests_api
from portability.contract.base import Answer
from portability.contract.document import build_document
from portability.contract.operations import Operation, Reply
from portability.contract.service import Health
from portability.health import health
from portability.webhooks import api as webhooks_api

Json = dict[str, Any]


class OpenApiDocument(Answer):
    """The OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")


_ERROR_RESPONSES = {
    "BadJson": "The body is not valid JSON, holds text no database can store (a lone "
    "surrogate), or names a destination the egress policy refuses (`bad_request`).",
    "TooLarge": "The body is larger than 1 MiB (`too_large`).",
    "TooMany": "Too many failed sign-ins or API keys from this address or for this key "
    "prefix (`too_many_requests`); `Retry-After` says when to try again.",
    "Unauthorized": "No valid API key or bearer JWT (`unauthorized`); for a JWT the "
    "message says which check failed (signature, issuer, audience, expiry).",
    "Forbidden": "The API key or token is not an admin's, or the token's email has no Ferry "
    "account (`forbidden`).",
    "NotFound": "No such thing, or not the caller's (`not_found`).",
    "Conflict": "Another export of the caller's is still running, or the request is not in a "
    "state that allows this (`conflict`); the message says why.",
    "Invalid": "The request is understood but refused (`invalid`); the message says why.",
}


async def openapi_json(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(render_docs())


SERVICE = [
    Operation(
        "get",
        "/api/health",
        "health",
        "service",
        "Whether the database and the storage backend answer",
        health,
        {
            200: Reply(Health, "Both answer."),
            503: Reply(Health, "One of them does not; `error` says why."),
        },
        access="public",
    ),
    Operation(
        "get",
        "/api/openapi.json",
        "openapi",
        "service",
        "This document",
        openapi_json,
        {200: Reply(OpenApiDocument, "The OpenAPI 3.1 document.")},
        access="public",
    ),
    Operation(
        "get",
        "/api/docs",
        "docs",
        "service",
        "This document as a page",
        docs_page,
        {200: Reply(None, "HTML.", media_type="text/html")},
        access="public",
    ),
]

OPERATIONS: list[Operation] = [
    *SERVICE,
    *credentials_api.OPERATIONS,
    *admin_api.OPERATIONS,
    *requests_api.OPERATIONS,
    *webhooks_api.OPERATIONS,
]

DOCUMENT: Json = build_document(
    OPERATIONS,
    info={
        "title": "Ferry API",
        "version": "1",
        "description": "The data-portability gateway's REST API: pull credentials, exports "
        "and transfers. JSON in, JSON out; every error is "
        '`{"error": {"code", "message"}}`. Authenticate with `Authorization: Bearer '
        "<API key>`, or, where Ferry is wired to the provider's OpenID Connect provider, "
        "`Authorization: Bearer <JWT access token>` from it; admin operations need an "
        "admin's key or token.",
    },
    tags=[
        {"name": "service", "description": "Health and this reference."},
        {"name": "credentials", "description": "Pull: read-only S3 credentials."},
        {"name": "requests", "description": "Push and export: portability requests."},
        {"name": "admin", "description": "For admins' API keys only."},
        {"name": "webhooks", "description": "Signed events, Standard Webhooks style."},
    ],
    security_schemes={
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "A user's API key (`ferry users create`, `ferry demo`), or, with "
            "`[oidc]` configured, a JWT access token from the provider's OpenID Connect "
            "provider: signed by a key of its JWKS, `iss` the configured issuer, `aud` "
            "`[oidc] api_audience`, not expired (clock skew `[oidc] clock_skew_seconds`). "
            "It stands for the user of its email claim; `[oidc] admin_claim` decides "
            "admin. When the provider cannot be reached to check one, the answer is 503 "
            "(`unavailable`).",
        }
    },
    error_descriptions=_ERROR_RESPONSES,
)

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "dashboard" / "templates"),
    autoescape=True,
)
_TEMPLATES.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)


def _schema_link(schema: Json) -> markupsafe.Markup:
    """A schema as the page shows it: links to named schemas, small ones inline."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return markupsafe.Markup('<a href="#schema-{0}">{0}</a>').format(name)
    if "oneOf" in schema:
        return markupsafe.Markup(" or ").join(_schema_link(s) for s in schema["oneOf"])
    if not schema:
        return markupsafe.Markup("")
    return markupsafe.Markup("<code>{}</code>").format(json.dumps(schema))


_TEMPLATES.filters["schema_link"] = _schema_link


def _resolve(value: Any) -> Any:
    """Follow a `$ref` within the document (one level), for the page."""
    if isinstance(value, dict) and "$ref" in value:
        node: Any = DOCUMENT
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return node
    return value


def render_docs() -> str:
    """The document as one plain HTML page: no scripts, nothing fetched from elsewhere."""
    operations = [
        {
            "method": method.upper(),
            "path": path,
            "operation": operation,
            "responses": {
                status: _resolve(answer) for status, answer in operation["responses"].items()
            },
        }
        for path, methods in DOCUMENT["paths"].items()
        for method, operation in methods.items()
    ]
    return _TEMPLATES.get_template("api_docs.html").render(
        info=DOCUMENT["info"],
        openapi=DOCUMENT["openapi"],
        operations=operations,
        schemas=DOCUMENT["components"]["schemas"],
    )
