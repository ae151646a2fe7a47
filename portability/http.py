"""What every API route shares: API-key authentication, one transaction, JSON errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import User
from portability.accounts import authenticate
from portability.exports.exceptions import ExportConflict, InvalidExport
from sts.exceptions import InvalidRequest, NotFound

Handler = Callable[[Request, AsyncSession, User], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# Domain errors as the API answers them: translated here, at the edge, and nowhere else.
_ERRORS: list[tuple[type[Exception], int, str]] = [
    (NotFound, 404, "not_found"),
    (ExportConflict, 409, "conflict"),
    (InvalidRequest, 422, "invalid"),
    (InvalidExport, 422, "invalid"),
]


def authed(
    sessions: async_sessionmaker[AsyncSession], handler: Handler, *, admin: bool = False
) -> Endpoint:
    """Run `handler` for the API key's user in one transaction, committed when it answers."""

    async def endpoint(request: Request) -> Response:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        try:
            async with sessions.begin() as session:
                user = None
                if scheme.lower() == "bearer" and key:
                    user = await authenticate(session, key.strip())
                if user is None:
                    raise ApiError(401, "unauthorized", "a valid API key is required")
                if admin and not user.is_admin:
                    raise ApiError(403, "forbidden", "this needs an admin's API key")
                return await handler(request, session, user)
        except ApiError as exc:
            return error(exc.status, exc.code, exc.message)
        except Exception as exc:
            for kind, status, code in _ERRORS:
                if isinstance(exc, kind):
                    return error(status, code, str(exc))
            raise

    return endpoint


async def body_json(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise ApiError(400, "bad_request", "the body is not valid JSON") from None
