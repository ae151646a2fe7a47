"""What every API route shares: API-key authentication, one transaction, JSON errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import User
from portability.accounts import authenticate
from portability.contract.base import M, Refused, parse
from portability.exports.exceptions import ExportConflict, InvalidExport
from portability.guard import DoorPolicy, looks_like_jwt
from portability.oidc.exceptions import AccountRefused, ProviderUnavailable, TokenInvalid
from portability.oidc.identity import Identity, account_for, identity_from_claims
from portability.state import api_state
from storage.egress import EgressRefused
from storage.validation import parse_decimal
from sts.exceptions import InvalidRequest, NotFound

Handler = Callable[[Request, AsyncSession, User], Awaitable[Response]]
RouteEndpoint = Callable[[Request], Awaitable[Response]]
NUL = "\x00"
MAX_BODY = 1024 * 1024  # every API body is a small JSON document


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# Domain errors as the API answers them: translated here, at the edge, and nowhere else.
_ERRORS: list[tuple[type[Exception], int, str]] = [
    (EgressRefused, 400, "bad_request"),
    (NotFound, 404, "not_found"),
    (ExportConflict, 409, "conflict"),
    (InvalidRequest, 422, "invalid"),
    (InvalidExport, 422, "invalid"),
]


def authed(handler: Handler, *, admin: bool = False) -> RouteEndpoint:
    """Run `handler` for the API key's user in one transaction, committed when it answers.

    With an OpenID Connect provider at the door (`door.oidc`), a bearer JWT from it (its
    `aud` the configured API audience) stands for the user of its email claim, under the
    same admin rules as a dashboard sign-in. A wrong key or token counts against the
    client's address and the key's prefix (`door.limiter`); past the limit the answer is 429
    before any key is looked at.
    """

    async def endpoint(request: Request) -> Response:
        state = api_state(request)
        door, sessions = state.door, state.sessions
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        limited = door.limit_keys(request, key)
        wait = door.limiter.retry_after(limited)
        if wait:
            answer = error(429, "too_many_requests", "too many failed API keys; try again later")
            answer.headers["retry-after"] = str(wait)
            return answer
        identity = None
        if door.oidc is not None and looks_like_jwt(key):
            try:
                identity = await _token_identity(door, key)
            except ProviderUnavailable:
                return error(
                    503, "unavailable", "the identity provider cannot be reached to check the token"
                )
            except (TokenInvalid, AccountRefused) as exc:
                door.limiter.failed(limited)
                return error(401, "unauthorized", f"the bearer token was not accepted: {exc}")
        try:
            async with sessions.begin() as session:
                user: User | None
                if identity is not None:
                    user = await _token_user(door, session, identity)
                else:
                    user = await authenticate(session, key) if key else None
                if user is None:
                    if key:
                        door.limiter.failed(limited)
                    raise ApiError(401, "unauthorized", "a valid API key is required")
                if admin and not user.is_admin:
                    raise ApiError(403, "forbidden", "this needs an admin's API key")
                if any(NUL in value for value in request.path_params.values()):
                    # PostgreSQL text cannot hold NUL, so no name or id contains one.
                    raise ApiError(404, "not_found", "no such thing")
                return await handler(request, session, user)
        except ApiError as exc:
            return error(exc.status, exc.code, exc.message)
        except Refused as exc:
            return error(exc.status, "bad_request" if exc.status == 400 else "invalid", str(exc))
        except Exception as exc:
            for kind, status, code in _ERRORS:
                if isinstance(exc, kind):
                    return error(status, code, str(exc))
            raise

    return endpoint


async def _token_identity(door: DoorPolicy, token: str) -> Identity:
    assert door.oidc is not None
    claims = await door.oidc.verify_access_token(token)
    return identity_from_claims(claims, door.oidc.settings)


async def _token_user(door: DoorPolicy, session: AsyncSession, identity: Identity) -> User:
    assert door.oidc is not None
    try:
        return await account_for(session, identity, door.oidc.settings)
    except AccountRefused as exc:
        raise ApiError(403, "forbidden", str(exc)) from None


async def body_json(request: Request) -> Any:
    try:
        body = json.loads(await read_body(request) or b"null")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise ApiError(400, "bad_request", "the body is not valid JSON") from None
    # PostgreSQL text and JSON cannot store either; refuse them here, not as a database error.
    problem = _unstorable_text(body)
    if problem == NUL:
        raise ApiError(422, "invalid", "text in the body must not contain NUL (\\u0000)")
    if problem:
        raise ApiError(
            400, "bad_request", "text in the body must not contain a lone surrogate (\\ud800)"
        )
    return body


async def read_model(request: Request, model: type[M], *, empty: Any = None) -> M:
    """The body as `model`; an empty body stands for `empty` (None: refused like any other)."""
    body = await body_json(request)
    return parse(model, empty if body is None and empty is not None else body)


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request's body, refused with 413 as soon as it is known to pass `limit` bytes."""
    try:
        announced = parse_decimal(request.headers.get("content-length", "0"))
    except ValueError:
        announced = 0  # the HTTP server has refused a malformed length; a huge one is read
    if announced > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    return bytes(chunks)


def _unstorable_text(body: Any) -> str:
    """The first string in `body` that cannot be stored: NUL, or one with a lone surrogate."""
    pending = [body]  # a loop, not recursion: the body may nest as deep as json allows
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if NUL in value:
                return NUL
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    # JSON's "\ud800" escape decodes to a lone surrogate, which no UTF-8
                    # text (and so no database column) can hold.
                    return value
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
    return ""
