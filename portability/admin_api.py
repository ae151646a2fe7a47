"""REST operations for admins: anyone's credentials, and a user's sessions.

GET  /api/admin/credentials                          everyone's, or `?user=` one's
POST /api/admin/credentials/{access_key_id}/revoke   200: revoked
POST /api/admin/users/{user_id}/revoke-credentials   200: every live one revoked
POST /api/admin/users/{user_id}/sign-out             200: every dashboard session ended
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import User
from portability import events
from portability.contract.credentials import Credential, CredentialList, RevokedAll, SignedOut
from portability.contract.operations import Operation, Param, Reply
from portability.credentials import describe, revoke_credential, revoke_user_credentials
from portability.credentials_api import ACCESS_KEY, ACTIVE, client
from portability.dashboard.session_store import end_all_sessions
from portability.state import api_state
from sts import issue as sts
from sts.exceptions import NotFound

USER_ID = Param("user_id", "The user's id or email.")
_FIRST = "/credentials/0/"  # the newest credential listed


async def list_credentials(request: Request, session: AsyncSession, admin: User) -> Response:
    state = api_state(request)
    active = request.query_params.get("active") == "true"
    who = request.query_params.get("user")
    user_id = (await find_user(session, who)).id if who else None
    now = state.clock()
    rows = await sts.list_credentials(session, now=now, user_id=user_id, active_only=active)
    return JSONResponse({"credentials": [describe(c, b, state.endpoint, now) for c, b in rows]})


async def revoke_any_credential(request: Request, session: AsyncSession, admin: User) -> Response:
    state = api_state(request)
    access_key_id = request.path_params["access_key_id"]
    now = state.clock()
    await revoke_credential(
        session,
        access_key_id,
        now=now,
        actor="admin",
        details={"admin": admin.email},
        client=client(request),
    )
    credential, bucket = await sts.find(session, access_key_id)
    return JSONResponse(describe(credential, bucket, state.endpoint, now))


async def revoke_all_of_user(request: Request, session: AsyncSession, admin: User) -> Response:
    target = await find_user(session, request.path_params["user_id"])
    count = await revoke_user_credentials(
        session,
        target,
        now=api_state(request).clock(),
        details={"admin": admin.email},
        client=client(request),
    )
    return JSONResponse({"user_id": str(target.id), "revoked": count})


async def sign_out_user(request: Request, session: AsyncSession, admin: User) -> Response:
    target = await find_user(session, request.path_params["user_id"])
    ended = await end_all_sessions(session, target.id, api_state(request).clock())
    events.record(
        session,
        actor="admin",
        action="dashboard.sign_out_everywhere",
        user_id=target.id,
        details={"ended": ended, "admin": admin.email},
        **client(request),
    )
    return JSONResponse({"user_id": str(target.id), "ended_sessions": ended})


async def find_user(session: AsyncSession, who: str) -> User:
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


OPERATIONS = [
    Operation(
        "get",
        "/api/admin/credentials",
        "adminListCredentials",
        "admin",
        "Everyone's credentials, or one user's",
        list_credentials,
        {
            200: Reply(
                CredentialList,
                "The credentials.",
                links={
                    "revoke": ("adminRevokeCredential", "access_key_id", _FIRST + "access_key_id"),
                    "revokeAll": ("adminRevokeUserCredentials", "user_id", _FIRST + "user_id"),
                },
            )
        },
        ("NotFound",),
        access="admin",
        parameters=(
            ACTIVE,
            Param(
                "user",
                "Only this user's: an id or an email (404 if none).",
                where="query",
                schema={"type": "string"},
            ),
        ),
    ),
    Operation(
        "post",
        "/api/admin/credentials/{access_key_id}/revoke",
        "adminRevokeCredential",
        "admin",
        "Revoke anyone's credential",
        revoke_any_credential,
        {200: Reply(Credential, "Revoked (or already was).")},
        ("NotFound",),
        access="admin",
        parameters=(ACCESS_KEY,),
    ),
    Operation(
        "post",
        "/api/admin/users/{user_id}/revoke-credentials",
        "adminRevokeUserCredentials",
        "admin",
        "Revoke every live credential of a user",
        revoke_all_of_user,
        {200: Reply(RevokedAll, "How many were revoked.")},
        ("NotFound",),
        access="admin",
        parameters=(USER_ID,),
    ),
    Operation(
        "post",
        "/api/admin/users/{user_id}/sign-out",
        "adminSignOutUser",
        "admin",
        "End every dashboard session of a user at once (sign out everywhere)",
        sign_out_user,
        {200: Reply(SignedOut, "How many live sessions were ended.")},
        ("NotFound",),
        access="admin",
        parameters=(USER_ID,),
    ),
]
