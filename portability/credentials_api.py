"""REST operations on the caller's own pull credentials.

POST   /api/portability/credentials                       201: issued, the secret once
GET    /api/portability/credentials                       the caller's (`?active=true`)
DELETE /api/portability/credentials/{access_key_id}       204: revoked
POST   /api/portability/credentials/{access_key_id}/rotate  200: a new secret, once
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import User
from portability.contract.credentials import (
    CredentialList,
    IssueCredential,
    IssuedCredential,
    RotateCredential,
    RotatedCredential,
)
from portability.contract.operations import Operation, Param, Reply
from portability.credentials import (
    describe,
    issue_for_user,
    revoke_credential,
    rotate_for_user,
)
from portability.http import read_model
from portability.state import api_state
from sts import issue as sts

NO_STORE = {"cache-control": "no-store"}
ACCESS_KEY = Param("access_key_id", "The credential's access key id (`FRY…`).")
ACTIVE = Param(
    "active",
    "`true`: only credentials that are neither revoked nor expired.",
    where="query",
    schema={"type": "string", "enum": ["true", "false"]},
)


def client(request: Request) -> dict[str, Any]:
    """Who asked, for the audit log."""
    return {
        "client_addr": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }


async def issue_credential(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    body = await read_model(request, IssueCredential)
    answer = await issue_for_user(
        session,
        state.master_key,
        user,
        body.bucket,
        body.issue_request(max_ttl_seconds=state.max_ttl_seconds),
        endpoint=state.endpoint,
        now=state.clock(),
    )
    return JSONResponse(answer, status_code=201, headers=NO_STORE)


async def list_credentials(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    active = request.query_params.get("active") == "true"
    now = state.clock()
    rows = await sts.list_credentials(session, now=now, user_id=user.id, active_only=active)
    return JSONResponse({"credentials": [describe(c, b, state.endpoint, now) for c, b in rows]})


async def revoke_own_credential(request: Request, session: AsyncSession, user: User) -> Response:
    await revoke_credential(
        session,
        request.path_params["access_key_id"],
        now=api_state(request).clock(),
        actor="user",
        user=user,
        client=client(request),
    )
    return Response(status_code=204)


async def rotate_credential(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    body = await read_model(request, RotateCredential, empty={})
    answer = await rotate_for_user(
        session,
        state.master_key,
        user,
        request.path_params["access_key_id"],
        grace_seconds=body.grace_seconds,
        endpoint=state.endpoint,
        now=state.clock(),
    )
    return JSONResponse(answer, headers=NO_STORE)


OPERATIONS = [
    Operation(
        "post",
        "/api/portability/credentials",
        "issueCredential",
        "credentials",
        "Issue a read-only, prefix-scoped S3 credential on one of the caller's buckets",
        issue_credential,
        {
            201: Reply(
                IssuedCredential,
                "Issued; the secret is shown this once.",
                links={"revoke": ("revokeCredential", "access_key_id", "/access_key_id")},
            )
        },
        ("NotFound",),
        body=(IssueCredential,),
    ),
    Operation(
        "get",
        "/api/portability/credentials",
        "listCredentials",
        "credentials",
        "The caller's credentials, newest first, with what was pulled through each",
        list_credentials,
        {200: Reply(CredentialList, "The credentials.")},
        parameters=(ACTIVE,),
    ),
    Operation(
        "delete",
        "/api/portability/credentials/{access_key_id}",
        "revokeCredential",
        "credentials",
        "Revoke one of the caller's credentials (revoking twice is harmless)",
        revoke_own_credential,
        {204: Reply(None, "Revoked; every gateway refuses it within a second.")},
        ("NotFound",),
        parameters=(ACCESS_KEY,),
    ),
    Operation(
        "post",
        "/api/portability/credentials/{access_key_id}/rotate",
        "rotateCredential",
        "credentials",
        "A new secret for the same key id and scope; the old one keeps working for "
        "`grace_seconds` (default 3600, 0: at once)",
        rotate_credential,
        {200: Reply(RotatedCredential, "Rotated; the new secret shown once.")},
        ("NotFound",),
        body=(RotateCredential,),
        body_required=False,
        parameters=(ACCESS_KEY,),
    ),
]
