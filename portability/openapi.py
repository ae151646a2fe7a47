"""The REST API's OpenAPI 3.1 document, and its reference page.

`DOCUMENT` describes every route under /api: what each takes, and every status it can
answer with. tests/functional/test_openapi_contract.py walks the app's routes and fails when
a route and the document part ways; tests/integration/test_openapi.py runs schemathesis
against a served Ferry to check the answers match it. The dashboard's HTML pages are not
part of the API and are not described here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from portability.webhooks import openapi as webhooks_openapi

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Json) -> Json:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: Json, description: str) -> Json:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _links(answer: Json, **links: tuple[str, str, str]) -> Json:
    """`answer` with OpenAPI links: name=(operationId, parameter, JSON pointer in the body)."""
    return {
        **answer,
        "links": {
            name: {"operationId": target, "parameters": {param: f"$response.body#{pointer}"}}
            for name, (target, param, pointer) in links.items()
        },
    }


def _error(description: str) -> Json:
    return {"$ref": f"#/components/responses/{description}"}


def _path_param(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1},
    }


_ACTIVE = {
    "name": "active",
    "in": "query",
    "required": False,
    "description": "`true`: only credentials that are neither revoked nor expired.",
    "schema": {"type": "string", "enum": ["true", "false"]},
}

TIME = {"type": "string", "format": "date-time", "description": "UTC, `YYYY-MM-DDTHH:MM:SSZ`"}

SCHEMAS: Json = {
    "Error": {
        "type": "object",
        "description": "Every error the API answers with.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable: bad_request, unauthorized, forbidden, "
                        "not_found, method_not_allowed, conflict, invalid, internal.",
                    },
                    "message": {"type": "string", "description": "For people; may change."},
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "database", "storage"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": _ref("Check"),
            "storage": _ref("Check"),
        },
    },
    "Check": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": {"type": "boolean"}, "error": {"type": "string"}},
    },
    "IssueCredential": {
        "type": "object",
        "description": "A read-only credential on one of the caller's buckets.",
        "required": ["bucket"],
        "additionalProperties": False,
        "properties": {
            "bucket": {"type": "string", "minLength": 1},
            "prefixes": {
                "type": "array",
                "items": {"type": "string"},
                "description": 'Key prefixes it may read; `[""]` (the default) is all.',
            },
            "ttl_seconds": {
                "type": "integer",
                "minimum": 900,
                "maximum": 31536000,
                "description": "At most 604800 (7 days) with a session token; a token-free "
                "key up to `[sts] max_ttl_seconds` (7 days unless the admin allows up to 365).",
            },
            "session_token": {
                "type": "boolean",
                "description": "`false`: a plain key pair, for forms without a token field.",
            },
            "allowed_cidrs": _nullable({"type": "array", "items": {"type": "string"}}),
            "max_bytes_per_second": _nullable(
                {"type": "integer", "minimum": 1024, "maximum": 1099511627776}
            ),
            "label": _nullable({"type": "string", "maxLength": 200}),
        },
        "examples": [{"bucket": "alice-data", "prefixes": ["share/"], "ttl_seconds": 3600}],
    },
    "Credential": {
        "type": "object",
        "description": "A pull credential, without its secret.",
        "required": [
            "access_key_id",
            "user_id",
            "bucket",
            "prefixes",
            "permission",
            "status",
            "session_token_required",
            "endpoint_url",
            "region",
            "created_at",
            "expires_at",
            "pulled",
        ],
        "properties": {
            "access_key_id": {"type": "string"},
            "user_id": {"type": "string", "format": "uuid"},
            "bucket": {"type": "string"},
            "prefixes": {"type": "array", "items": {"type": "string"}},
            "permission": {"type": "string", "enum": ["read-only"]},
            "label": _nullable({"type": "string"}),
            "kind": {
                "type": "string",
                "enum": ["user", "session"],
                "description": "`session`: minted through STS by `parent_access_key_id`.",
            },
            "parent_access_key_id": _nullable({"type": "string"}),
            "status": {"type": "string", "enum": ["active", "expired", "revoked"]},
            "session_token_required": {"type": "boolean"},
            "allowed_cidrs": {"type": "array", "items": {"type": "string"}},
            "max_bytes_per_second": _nullable({"type": "integer"}),
            "endpoint_url": {"type": "string"},
            "region": {"type": "string"},
            "created_at": TIME,
            "expires_at": TIME,
            "revoked_at": _nullable(TIME),
            "last_used_at": _nullable(TIME),
            "pulled": {
                "type": "object",
                "required": ["bytes", "objects", "requests"],
                "properties": {
                    "bytes": {"type": "integer"},
                    "objects": {"type": "integer"},
                    "requests": {"type": "integer"},
                },
            },
        },
    },
    "RotatedCredential": {
        "allOf": [
            _ref("Credential"),
            {
                "type": "object",
                "required": ["secret_access_key", "previous_secret_valid_until"],
                "properties": {
                    "secret_access_key": {"type": "string", "description": "Shown once."},
                    "previous_secret_valid_until": {
                        **TIME,
                        "description": "The old secret is refused from then on.",
                    },
                },
            },
        ]
    },
    "IssuedCredential": {
        "description": "A new credential with its secret: shown in this answer only.",
        "allOf": [
            _ref("Credential"),
            {
                "type": "object",
                "required": ["secret_access_key", "session_token", "snippets", "handoff"],
                "properties": {
                    "secret_access_key": {"type": "string"},
                    "session_token": _nullable({"type": "string"}),
                    "handoff": _ref("HandoffDocument"),
                    "snippets": {
                        "type": "object",
                        "description": "Ready-to-paste shell for each client.",
                        "required": ["aws_cli", "rclone", "s5cmd", "env"],
                        "additionalProperties": {"type": "string"},
                    },
                },
            },
        ],
    },
    "CredentialList": {
        "type": "object",
        "required": ["credentials"],
        "properties": {"credentials": {"type": "array", "items": _ref("Credential")}},
    },
    "RevokedAll": {
        "type": "object",
        "required": ["user_id", "revoked"],
        "properties": {
            "user_id": {"type": "string", "format": "uuid"},
            "revoked": {"type": "integer", "minimum": 0},
        },
    },
    "SignedOut": {
        "type": "object",
        "required": ["user_id", "ended_sessions"],
        "properties": {
            "user_id": {"type": "string", "format": "uuid"},
            "ended_sessions": {"type": "integer", "minimum": 0},
        },
    },
    "ExportRequest": {
        "type": "object",
        "description": "Personal data as JSON, an archive of everything, or S3 credentials.",
        "required": ["format"],
        "additionalProperties": False,
        "properties": {
            "request_type": {"type": "string", "enum": ["export"], "default": "export"},
            "format": {"type": "string", "enum": ["json", "archive", "s3"]},
            "archive_format": {
                "type": "string",
                "enum": ["tar.gz", "zip"],
                "description": "format `archive` only (default zip).",
            },
            "include": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "enum": ["personal", "files"]},
                "description": "format `archive` only (default both).",
            },
            "session_token": {
                "type": "boolean",
                "description": "format `s3` only: `false` for credentials without a token.",
            },
        },
        "examples": [
            {"request_type": "export", "format": "archive", "archive_format": "tar.gz"},
            {"format": "s3", "session_token": False},
        ],
    },
    "TransferRequest": {
        "type": "object",
        "description": "Push a bucket (or a prefix of it) to another provider's S3 endpoint.",
        "required": ["request_type", "destination"],
        "additionalProperties": False,
        "properties": {
            "request_type": {"type": "string", "enum": ["transfer"]},
            "source": {
                "type": "object",
                "additionalProperties": False,
                "description": "`bucket` may be left out when the caller has one bucket.",
                "properties": {"bucket": {"type": "string"}, "prefix": {"type": "string"}},
            },
            "destination": {
                "type": "object",
                "required": ["endpoint_url", "bucket", "access_key_id", "secret_access_key"],
                "additionalProperties": False,
                "properties": {
                    "endpoint_url": {"type": "string", "format": "uri"},
                    "region": {"type": "string", "default": "us-east-1"},
                    "bucket": {"type": "string", "minLength": 3, "maxLength": 63},
                    "prefix": {"type": "string"},
                    "access_key_id": {"type": "string", "minLength": 1},
                    "secret_access_key": {"type": "string", "minLength": 1},
                    "session_token": _nullable({"type": "string"}),
                    "addressing_style": {"type": "string", "enum": ["path", "virtual"]},
                    "checksum": {"type": "string", "enum": ["auto", "md5", "crc32c", "sha256"]},
                },
            },
        },
        "examples": [
            {
                "request_type": "transfer",
                "source": {"bucket": "alice-data", "prefix": ""},
                "destination": {
                    "endpoint_url": "https://s3.example.net",
                    "region": "eu-west-1",
                    "bucket": "alice-new-home",
                    "access_key_id": "AKIA…",
                    "secret_access_key": "…",
                },
            }
        ],
    },
    "HandoffDocument": {
        "type": "object",
        "description": "Everything another provider needs to pull one bucket: shown once, "
        "with the secret, when credentials (or an `s3` export) are issued. An import accepts "
        "it in place of `source`. `manifest_url`, when set, is a presigned link to the "
        "`ferry-manifest` (key, size, sha256) the import verifies every object against.",
        "required": [
            "format",
            "version",
            "endpoint_url",
            "region",
            "bucket",
            "prefixes",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "expires_at",
            "manifest_url",
        ],
        "additionalProperties": False,
        "properties": {
            "format": {"type": "string", "enum": ["ferry-handoff"]},
            "version": {"type": "integer", "enum": [1]},
            "endpoint_url": {"type": "string", "format": "uri"},
            "region": {"type": "string"},
            "addressing_style": {"type": "string", "enum": ["path", "virtual"]},
            "bucket": {"type": "string"},
            "prefixes": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "access_key_id": {"type": "string"},
            "secret_access_key": {"type": "string"},
            "session_token": _nullable({"type": "string"}),
            "expires_at": {"type": "string", "format": "date-time"},
            "manifest_url": _nullable({"type": "string", "format": "uri"}),
        },
    },
    "ImportRequest": {
        "type": "object",
        "description": "Bring objects from another provider's S3 endpoint into one of the "
        "caller's buckets, through the copy engine (multipart, parallel, checksummed, "
        "resumable). Give `source`, or `handoff` (with `source_prefix` when the document "
        "covers several prefixes). `on_conflict` rules an object already in the bucket: "
        "`skip_identical` leaves identical ones and replaces the rest, `overwrite` writes "
        "every one, `fail` keeps a different one and fails its item; the report lists "
        "every existing object that differed. With a manifest (`manifest_url`, or the "
        "hand-off's), every object's sha256 is computed while it is read and compared; "
        "any mismatch fails the request. Secrets and the manifest link are sealed at rest "
        "and never returned; the source and the manifest link go through the egress policy.",
        "required": ["target"],
        "additionalProperties": False,
        "properties": {
            "request_type": {"type": "string", "enum": ["import"]},
            "source": {
                "type": "object",
                "required": ["endpoint_url", "bucket", "access_key_id", "secret_access_key"],
                "additionalProperties": False,
                "properties": {
                    "endpoint_url": {"type": "string", "format": "uri"},
                    "region": {"type": "string", "default": "us-east-1"},
                    "bucket": {"type": "string", "minLength": 1, "maxLength": 255},
                    "prefix": {"type": "string", "default": ""},
                    "access_key_id": {"type": "string", "minLength": 1},
                    "secret_access_key": {"type": "string", "minLength": 1},
                    "session_token": _nullable({"type": "string"}),
                    "addressing_style": {"type": "string", "enum": ["path", "virtual"]},
                },
            },
            "handoff": _ref("HandoffDocument"),
            "source_prefix": {"type": "string"},
            "target": {
                "type": "object",
                "additionalProperties": False,
                "description": "`bucket` may be left out when the caller has one bucket.",
                "properties": {"bucket": {"type": "string"}, "prefix": {"type": "string"}},
            },
            "manifest_url": {"type": "string", "format": "uri"},
            "on_conflict": {
                "type": "string",
                "enum": ["skip_identical", "overwrite", "fail"],
                "default": "skip_identical",
            },
        },
        "examples": [
            {
                "source": {
                    "endpoint_url": "https://s3.old-provider.example",
                    "bucket": "alice-photos",
                    "access_key_id": "AKIA…",
                    "secret_access_key": "…",
                },
                "target": {"bucket": "alice-data", "prefix": "imported/"},
            }
        ],
    },
    "PortabilityRequest": {
        "type": "object",
        "description": "An export, a transfer or an import and where it stands. An import's "
        "source (without its secrets) and target are in `metadata.options`.",
        "required": [
            "id",
            "user_id",
            "request_type",
            "status",
            "format",
            "export_url",
            "expires_at",
            "transfer_destination",
            "created_at",
            "completed_at",
            "metadata",
        ],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "user_id": {"type": "string", "format": "uuid"},
            "request_type": {"type": "string", "enum": ["export", "transfer", "import"]},
            "status": {
                "type": "string",
                "enum": [
                    "pending",
                    "processing",
                    "ready",
                    "completed",
                    "failed",
                    "cancelled",
                    "expired",
                ],
            },
            "format": _nullable({"type": "string", "enum": ["json", "archive", "s3"]}),
            "export_url": _nullable(
                {
                    "type": "string",
                    "description": "The first (or only) download: a presigned gateway URL, "
                    "signed for the owner when they read the request and living until "
                    "`expires_at` at most. Null when there is nothing to download (not ready "
                    "yet, expired, cancelled, links revoked) and in every other answer.",
                }
            ),
            "expires_at": _nullable(TIME),
            "transfer_destination": _nullable(
                {
                    "type": "object",
                    "description": "A transfer's destination, never its secrets.",
                    "properties": {
                        "endpoint_url": {"type": "string"},
                        "region": {"type": "string"},
                        "bucket": {"type": "string"},
                        "prefix": {"type": "string"},
                        "access_key_id": {"type": "string"},
                        "addressing_style": {"type": "string"},
                        "checksum": {"type": "string"},
                    },
                }
            ),
            "created_at": TIME,
            "completed_at": _nullable(TIME),
            "metadata": {
                "type": "object",
                "description": "progress, parts ({name, key, size, sha256, url}), "
                "manifest_url, report, error, due_at, options, credentials, "
                "links_revoked_at (see portability/requests.py). `parts[].url` and "
                "`manifest_url` are signed like `export_url`: working links in the owner's "
                "reads, null otherwise.",
            },
        },
    },
    "CreatedRequest": {
        "description": "The new request; a format `s3` export also carries its credentials "
        "with their secrets, in this answer only.",
        "allOf": [
            _ref("PortabilityRequest"),
            {
                "type": "object",
                "properties": {"credentials": {"type": "array", "items": _ref("IssuedCredential")}},
            },
        ],
    },
    "RequestList": {
        "type": "object",
        "required": ["requests"],
        "properties": {"requests": {"type": "array", "items": _ref("PortabilityRequest")}},
    },
    "OverdueRequests": {
        "type": "object",
        "required": ["now", "requests"],
        "properties": {
            "now": TIME,
            "requests": {
                "type": "array",
                "items": {
                    "allOf": [
                        _ref("PortabilityRequest"),
                        {
                            "type": "object",
                            "required": ["due_at", "overdue_days", "user_email"],
                            "properties": {
                                "due_at": TIME,
                                "overdue_days": {"type": "integer", "minimum": 0},
                                "user_email": _nullable({"type": "string"}),
                            },
                        },
                    ]
                },
            },
        },
    },
}

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

_USER = ("Unauthorized", "TooMany")
_ADMIN = ("Unauthorized", "Forbidden", "TooMany")
_STATUS = {
    "BadJson": "400",
    "TooLarge": "413",
    "TooMany": "429",
    "Unauthorized": "401",
    "Forbidden": "403",
    "NotFound": "404",
    "Conflict": "409",
    "Invalid": "422",
}


def _operation(
    operation_id: str,
    tag: str,
    summary: str,
    answers: Json,
    *errors: str,
    parameters: list[Json] | None = None,
    body: Json | None = None,
    public: bool = False,
    description: str | None = None,
) -> Json:
    """One operation: its own answers (by status) and the named error answers."""
    responses: Json = dict(answers)
    for name in errors:
        responses[_STATUS[name]] = _error(name)
    operation: Json = {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "responses": dict(sorted(responses.items())),
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    if public:
        operation["security"] = []
    return operation


_ACCESS_KEY = _path_param("access_key_id", "The credential's access key id (`FRY…`).")
_FIRST = "/credentials/0/"  # the newest credential listed
_REQUEST_ID = _path_param("request_id", "The request's id (a UUID).")

PATHS: Json = {
    "/api/health": {
        "get": _operation(
            "health",
            "service",
            "Whether the database and the storage backend answer",
            {
                "200": _json(_ref("Health"), "Both answer."),
                "503": _json(_ref("Health"), "One of them does not; `error` says why."),
            },
            public=True,
        )
    },
    "/api/openapi.json": {
        "get": _operation(
            "openapi",
            "service",
            "This document",
            {"200": _json({"type": "object"}, "The OpenAPI 3.1 document.")},
            public=True,
        )
    },
    "/api/docs": {
        "get": _operation(
            "docs",
            "service",
            "This document as a page",
            {"200": {"description": "HTML.", "content": {"text/html": {"schema": {}}}}},
            public=True,
        )
    },
    "/api/portability/credentials": {
        "post": _operation(
            "issueCredential",
            "credentials",
            "Issue a read-only, prefix-scoped S3 credential on one of the caller's buckets",
            {
                "201": _links(
                    _json(_ref("IssuedCredential"), "Issued; the secret is shown this once."),
                    revoke=("revokeCredential", "access_key_id", "/access_key_id"),
                )
            },
            "BadJson",
            "TooLarge",
            *_USER,
            "NotFound",
            "Invalid",
            body=_ref("IssueCredential"),
        ),
        "get": _operation(
            "listCredentials",
            "credentials",
            "The caller's credentials, newest first, with what was pulled through each",
            {"200": _json(_ref("CredentialList"), "The credentials.")},
            *_USER,
            parameters=[_ACTIVE],
        ),
    },
    "/api/portability/credentials/{access_key_id}": {
        "delete": _operation(
            "revokeCredential",
            "credentials",
            "Revoke one of the caller's credentials (revoking twice is harmless)",
            {"204": {"description": "Revoked; every gateway refuses it within a second."}},
            *_USER,
            "NotFound",
            parameters=[_ACCESS_KEY],
        )
    },
    "/api/portability/credentials/{access_key_id}/rotate": {
        "post": {
            **_operation(
                "rotateCredential",
                "credentials",
                "A new secret for the same key id and scope; the old one keeps working for "
                "`grace_seconds` (default 3600, 0: at once)",
                {"200": _json(_ref("RotatedCredential"), "Rotated; the new secret shown once.")},
                "BadJson",
                "TooLarge",
                *_USER,
                "NotFound",
                "Invalid",
                parameters=[_ACCESS_KEY],
            ),
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "grace_seconds": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "maximum": 604800,
                                }
                            },
                        }
                    }
                },
            },
        }
    },
    "/api/admin/credentials": {
        "get": _operation(
            "adminListCredentials",
            "admin",
            "Everyone's credentials, or one user's",
            {
                "200": _links(
                    _json(_ref("CredentialList"), "The credentials."),
                    revoke=("adminRevokeCredential", "access_key_id", _FIRST + "access_key_id"),
                    revokeAll=("adminRevokeUserCredentials", "user_id", _FIRST + "user_id"),
                )
            },
            *_ADMIN,
            "NotFound",
            parameters=[
                _ACTIVE,
                {
                    "name": "user",
                    "in": "query",
                    "required": False,
                    "description": "Only this user's: an id or an email (404 if none).",
                    "schema": {"type": "string"},
                },
            ],
        )
    },
    "/api/admin/credentials/{access_key_id}/revoke": {
        "post": _operation(
            "adminRevokeCredential",
            "admin",
            "Revoke anyone's credential",
            {"200": _json(_ref("Credential"), "Revoked (or already was).")},
            *_ADMIN,
            "NotFound",
            parameters=[_ACCESS_KEY],
        )
    },
    "/api/admin/users/{user_id}/revoke-credentials": {
        "post": _operation(
            "adminRevokeUserCredentials",
            "admin",
            "Revoke every live credential of a user",
            {"200": _json(_ref("RevokedAll"), "How many were revoked.")},
            *_ADMIN,
            "NotFound",
            parameters=[_path_param("user_id", "The user's id or email.")],
        )
    },
    "/api/admin/users/{user_id}/sign-out": {
        "post": _operation(
            "adminSignOutUser",
            "admin",
            "End every dashboard session of a user at once (sign out everywhere)",
            {"200": _json(_ref("SignedOut"), "How many live sessions were ended.")},
            *_ADMIN,
            "NotFound",
            parameters=[_path_param("user_id", "The user's id or email.")],
        )
    },
    "/api/portability/export": {
        "post": _operation(
            "createRequest",
            "requests",
            "Ask for an export (request_type `export`, the default) or a transfer",
            {
                "202": _links(
                    _json(_ref("CreatedRequest"), "Accepted; the worker takes it from here."),
                    show=("getRequest", "request_id", "/id"),
                    cancel=("cancelRequest", "request_id", "/id"),
                    revoke_links=("revokeRequestLinks", "request_id", "/id"),
                )
            },
            "BadJson",
            "TooLarge",
            *_USER,
            "Conflict",
            "Invalid",
            body={"oneOf": [_ref("ExportRequest"), _ref("TransferRequest")]},
        )
    },
    "/api/portability/import": {
        "post": _operation(
            "createImport",
            "requests",
            "Import objects from another provider into one of the caller's buckets",
            {
                "202": _links(
                    _json(_ref("PortabilityRequest"), "Accepted; a worker takes it from here."),
                    show=("getRequest", "request_id", "/id"),
                    cancel=("cancelRequest", "request_id", "/id"),
                )
            },
            "BadJson",
            "TooLarge",
            *_USER,
            "Invalid",
            body=_ref("ImportRequest"),
        )
    },
    "/api/portability/requests": {
        "get": _operation(
            "listRequests",
            "requests",
            "The caller's requests, newest first",
            {
                "200": _links(
                    _json(_ref("RequestList"), "The requests."),
                    show=("getRequest", "request_id", "/requests/0/id"),
                    cancel=("cancelRequest", "request_id", "/requests/0/id"),
                    revoke_links=("revokeRequestLinks", "request_id", "/requests/0/id"),
                )
            },
            *_USER,
        )
    },
    "/api/portability/requests/{request_id}": {
        "get": _operation(
            "getRequest",
            "requests",
            "One of the caller's requests (anyone else's is 404, like a missing one)",
            {"200": _json(_ref("PortabilityRequest"), "The request.")},
            *_USER,
            "NotFound",
            parameters=[_REQUEST_ID],
        )
    },
    "/api/portability/requests/{request_id}/revoke-links": {
        "post": _operation(
            "revokeRequestLinks",
            "requests",
            "Revoke every download link of a ready or completed export",
            {"200": _json(_ref("PortabilityRequest"), "Revoked (or already was).")},
            *_USER,
            "NotFound",
            "Conflict",
            parameters=[_REQUEST_ID],
            description="Every link of the export (and, for format `s3`, its pull "
            "credentials) is refused by the gateway within a second. The request keeps its "
            "status and gains `metadata.links_revoked_at`; no link is signed for it again and "
            "its files are deleted. A cancelled, failed or expired export has no live link "
            "and is answered as it is. An export still being built answers 409 (cancel it "
            "instead), as does a transfer.",
        )
    },
    "/api/portability/requests/{request_id}/cancel": {
        "post": _operation(
            "cancelRequest",
            "requests",
            "Cancel a request that is pending, processing or ready; its links and "
            "credentials stop working at once",
            {"202": _json(_ref("PortabilityRequest"), "Cancelled (or already was).")},
            *_USER,
            "NotFound",
            "Invalid",
            parameters=[_REQUEST_ID],
        )
    },
    "/api/admin/requests/overdue": {
        "get": _operation(
            "adminOverdueRequests",
            "admin",
            "Requests still unanswered past their due date (GDPR Article 12(3): one month)",
            {"200": _json(_ref("OverdueRequests"), "The late requests, oldest first.")},
            *_ADMIN,
        )
    },
}

DOCUMENT: Json = {
    "openapi": "3.1.0",
    "info": {
        "title": "Ferry API",
        "version": "1",
        "description": "The data-portability gateway's REST API: pull credentials, exports "
        "and transfers. JSON in, JSON out; every error is "
        '`{"error": {"code", "message"}}`. Authenticate with `Authorization: Bearer '
        "<API key>`, or, where Ferry is wired to the provider's OpenID Connect provider, "
        "`Authorization: Bearer <JWT access token>` from it; admin operations need an "
        "admin's key or token.",
    },
    "servers": [{"url": "/"}],
    "security": [{"apiKey": []}],
    "tags": [
        {"name": "service", "description": "Health and this reference."},
        {"name": "credentials", "description": "Pull: read-only S3 credentials."},
        {"name": "requests", "description": "Push and export: portability requests."},
        {"name": "admin", "description": "For admins' API keys only."},
        {"name": "webhooks", "description": "Signed events, Standard Webhooks style."},
    ],
    "paths": {**PATHS, **webhooks_openapi.PATHS},
    "components": {
        "securitySchemes": {
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
        "schemas": {**SCHEMAS, **webhooks_openapi.SCHEMAS},
        "responses": {
            name: _json(_ref("Error"), description)
            for name, description in _ERROR_RESPONSES.items()
        },
    },
}

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


async def openapi_json(request: Request) -> Response:
    return JSONResponse(DOCUMENT)


async def docs_page(request: Request) -> Response:
    return HTMLResponse(render_docs())
