"""The dashboard's shared machinery: who is signed in, CSRF checks, one transaction, pages.

Every page handler gets a `Ctx` for a signed-in user inside one database transaction. What
can go wrong becomes a page a person can read: a wrong key, an expired session or a form
without its CSRF token each get their own explanation; a domain error is shown next to the
form that caused it; anything unexpected is logged and shown as a plain apology.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from db.models import User
from portability.accounts import AccountError
from portability.credentials import GatewayAddress
from portability.dashboard.forms import BadForm, Form, read_form
from portability.dashboard.session_store import session_user
from portability.dashboard.sessions import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SessionCodec,
    SessionData,
    SessionError,
    SessionExpired,
    csrf_matches,
    new_csrf_token,
)
from portability.dashboard.views import Pages
from portability.exports.exceptions import ExportConflict, InvalidExport
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from portability.http import RouteEndpoint
from portability.oidc.provider import OidcClient
from storage.base import Storage
from storage.egress import EgressPolicy, EgressRefused
from sts.exceptions import InvalidRequest, NotFound
from sts.issue import TTL_MAX

log = logging.getLogger("ferry.dashboard")


class UserError(Exception):
    """Bad form input, or something missing, with a message fit for the page."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# Errors a person caused and can fix: shown beside the form, never as a trace.
USER_ERRORS: tuple[type[Exception], ...] = (
    UserError,
    InvalidRequest,
    InvalidExport,
    ExportConflict,
    NotFound,
    AccountError,
    EgressRefused,
)


@dataclass
class Ctx:
    request: Request
    db: AsyncSession
    user: User
    session: SessionData
    form: Form | None
    now: datetime

    def client(self) -> dict[str, Any]:
        return {
            "client_addr": self.request.client.host if self.request.client else None,
            "user_agent": self.request.headers.get("user-agent"),
        }


PageHandler = Callable[[Ctx], Awaitable[Response]]
ErrorHandler = Callable[[Ctx, str], Awaitable[Response]]


@dataclass
class Dashboard:
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    master_key: bytes
    endpoint: GatewayAddress
    settings: ExportSettings
    codec: SessionCodec
    pages: Pages
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    door: DoorPolicy = field(default_factory=DoorPolicy)
    max_ttl_seconds: int = TTL_MAX  # [sts]: the longest life of a token-free key
    # Set: "Sign in with <provider>" on the sign-in page ([oidc]).
    oidc: OidcClient | None = None
    public_url: str = ""  # what the provider sends the browser back to; empty: the request's

    @property
    def api_key_signin(self) -> bool:
        return self.oidc is None or self.oidc.settings.allow_api_key_signin

    # -- rendering ------------------------------------------------------------------------

    def render(
        self,
        request: Request,
        name: str,
        *,
        user: User | None = None,
        csrf: str = "",
        status: int = 200,
        **context: Any,
    ) -> Response:
        return self.pages.render(
            name,
            {
                "user": user,
                "csrf": csrf,
                "csrf_field": CSRF_FIELD,
                "now": self.clock(),
                "path": request.url.path,
                **context,
            },
            status=status,
            form_origins=self.oidc.form_origins() if self.oidc else (),
        )

    def message(
        self, request: Request, status: int, title: str, text: str, **extra: Any
    ) -> Response:
        return self.render(request, "message.html", status=status, title=title, text=text, **extra)

    def login_page(
        self,
        request: Request,
        *,
        notice: str = "",
        error: str = "",
        status: int = 200,
        clear_session: bool = False,
    ) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_csrf_token()
        next_path = safe_next(request.query_params.get("next", ""))
        response = self.render(
            request,
            "login.html",
            status=status,
            csrf=token,
            notice=notice,
            error=error,
            next=next_path,
            oidc_name=self.oidc.settings.display_name if self.oidc else "",
            api_key_signin=self.api_key_signin,
        )
        self.set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        if clear_session:
            response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- who is signed in -----------------------------------------------------------------

    def set_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        *,
        max_age: int,
        path: str = "/",
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            httponly=True,
            samesite="lax",
            secure=self.door.secure_cookies(request),
        )

    def base_url(self, request: Request) -> str:
        return (self.public_url or str(request.base_url)).rstrip("/")

    async def user_for(self, db: AsyncSession, data: SessionData) -> User | None:
        return await session_user(db, data.session_id, self.clock())

    def page(
        self, handler: PageHandler, *, admin: bool = False, on_error: ErrorHandler | None = None
    ) -> RouteEndpoint:
        """Wrap a handler: session, CSRF on POST, one transaction, errors as pages."""

        async def endpoint(request: Request) -> Response:
            try:
                data = self.codec.loads(request.cookies.get(SESSION_COOKIE))
            except SessionExpired:
                return self.login_page(
                    request,
                    notice="Your session has expired. Please sign in again.",
                    status=401,
                    clear_session=True,
                )
            except SessionError:
                if request.method == "GET":
                    target = "/login?next=" + quote(request.url.path)
                    return RedirectResponse(target, status_code=303)
                return self.login_page(request, notice="Please sign in first.", status=401)
            form = None
            if request.method == "POST":
                try:
                    form = await read_form(request)
                except BadForm as exc:
                    return self.message(request, exc.status, exc.title, str(exc))
                if not csrf_matches(data.csrf, form.get(CSRF_FIELD)):
                    return csrf_failure(self, request)
            try:
                async with self.sessions.begin() as db:
                    user = await self.user_for(db, data)
                    if user is None:
                        return self.login_page(
                            request,
                            notice="Your session has ended (you signed out, were signed "
                            "out by an administrator, or the API key you signed in with is "
                            "no longer valid). Please sign in again.",
                            status=401,
                            clear_session=True,
                        )
                    if admin and not user.is_admin:
                        return self.message(
                            request,
                            403,
                            "Admins only",
                            "This page is for administrators. Your account is not one.",
                            user=user,
                            csrf=data.csrf,
                        )
                    ctx = Ctx(request, db, user, data, form, self.clock())
                    return await handler(ctx)
            except USER_ERRORS as exc:
                reason = str(exc)
                status = 404 if isinstance(exc, NotFound) else getattr(exc, "status", 422)
                if on_error is None:
                    return self.message(request, status, "That did not work", reason)
                async with self.sessions.begin() as db:
                    user = await self.user_for(db, data)
                    assert user is not None
                    ctx = Ctx(request, db, user, data, form, self.clock())
                    return await on_error(ctx, reason)
            except Exception:
                log.exception("dashboard error on %s %s", request.method, request.url.path)
                return self.message(
                    request,
                    500,
                    "Something went wrong",
                    "Ferry could not finish this. The error has been logged; please try "
                    "again in a moment.",
                )

        return endpoint


def csrf_failure(dash: Dashboard, request: Request) -> Response:
    return dash.message(
        request,
        403,
        "This form could not be accepted",
        "It arrived without its security token (CSRF), or the token belongs to another "
        "session. Nothing was changed. Go back, reload the page and send the form again.",
    )


def safe_next(path: str) -> str:
    """Only a local path: never an open redirect to another site."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def page_form(ctx: Ctx) -> Form:
    assert ctx.form is not None, "POST handlers always get a form"
    return ctx.form
