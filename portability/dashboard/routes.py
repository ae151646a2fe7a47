"""Mount point of the dashboard: `dashboard_routes(...)` for the API app.

GET  /login, POST /login, POST /logout        sign in with an API key; sign out
GET  /login/oidc, GET /login/oidc/callback    sign in with the OIDC provider ([oidc])
GET  /                                        overview: the user's requests
GET  /credentials, POST /credentials          issue pull credentials; the list
POST /credentials/{access_key_id}/revoke, POST /credentials/{access_key_id}/rotate
GET  /requests/new, POST /requests/new        new export, pull credentials or transfer
GET  /requests/{id}                           one request, live progress, report
GET  /requests/{id}/status.json               what the page's script polls
POST /requests/{id}/cancel
POST /requests/{id}/revoke-links              kill a ready or completed export's links
POST /requests/test-destination               the transfer form's HeadBucket + ListObjectsV2
GET  /admin                                   active credentials, overdue requests
POST /admin/credentials/{access_key_id}/revoke
POST /admin/users/{user_id}/revoke-credentials
POST /admin/sessions/end                      sign a user out of every dashboard session
GET  /webhooks, POST /webhooks                 endpoints, their delivery logs; add one
POST /webhooks/{id}/delete, POST /webhooks/{id}/deliveries/{n}/resend
GET  /admin/audit                             audit log: user, credential, time range
GET  /static/...                              the stylesheet and the script
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from db.models import ApiKey, User
from portability import events
from portability.accounts import KEY_PREFIX, hash_api_key
from portability.credentials import GatewayAddress
from portability.dashboard import (
    admin_pages,
    audit_pages,
    credential_pages,
    import_pages,
    oidc_pages,
    request_pages,
    webhook_pages,
)
from portability.dashboard.app import Dashboard, csrf_failure, safe_next
from portability.dashboard.forms import BadForm, read_form
from portability.dashboard.session_store import end_session, open_session
from portability.dashboard.sessions import (
    CSRF_FIELD,
    DEFAULT_MAX_AGE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SessionCodec,
    SessionError,
    csrf_matches,
)
from portability.dashboard.views import STATIC, Pages
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from portability.oidc.exceptions import ProviderUnavailable
from portability.oidc.identity import record_sign_in
from storage.base import Storage
from storage.egress import EgressPolicy
from sts.issue import TTL_MAX

STATIC_FILES = frozenset({"ferry.css", "ferry.js"})


def dashboard_routes(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    master_key: bytes,
    endpoint: GatewayAddress,
    settings: ExportSettings | None = None,
    *,
    session_max_age: int = DEFAULT_MAX_AGE,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    egress: EgressPolicy | None = None,
    door: DoorPolicy | None = None,
    max_ttl_seconds: int = TTL_MAX,
    public_url: str = "",
) -> list[Route]:
    """The dashboard's routes, to be added to the API app's routes (`routes += ...`).

    With an OpenID Connect provider at the door (`door.oidc`) the sign-in page offers it;
    `public_url` is where the provider sends the browser back to (empty: the request's own).
    """
    door = door or DoorPolicy()
    dash = Dashboard(
        sessions=sessions,
        storage=storage,
        master_key=master_key,
        endpoint=endpoint,
        settings=settings or ExportSettings(gateway_url=endpoint.url, region=endpoint.region),
        codec=SessionCodec(master_key, max_age=session_max_age, clock=clock),
        pages=Pages(),
        clock=clock,
        egress=egress or EgressPolicy(),
        door=door,
        oidc=door.oidc,
        public_url=public_url,
        max_ttl_seconds=max_ttl_seconds,
    )

    async def login_form(request: Request) -> Response:
        try:
            dash.codec.loads(request.cookies.get(SESSION_COOKIE))
        except SessionError:
            notice = "You are signed out." if "signed_out" in request.query_params else ""
            return dash.login_page(request, notice=notice)
        return RedirectResponse(safe_next(request.query_params.get("next", "/")), 303)

    async def login(request: Request) -> Response:
        if not dash.api_key_signin:
            return dash.login_page(
                request,
                error="Signing in with an API key is turned off here; use the button above.",
                status=403,
            )
        try:
            form = await read_form(request)
        except BadForm as exc:
            return dash.message(request, exc.status, exc.title, str(exc))
        if not csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), form.get(CSRF_FIELD)):
            return csrf_failure(dash, request)
        key = form.get("api_key").strip()
        limited = dash.door.limit_keys(request, key)
        wait = dash.door.limiter.retry_after(limited)
        if wait:
            page = dash.login_page(
                request,
                error=f"Too many keys were refused. Please wait {wait} seconds and try again.",
                status=429,
            )
            page.headers["retry-after"] = str(wait)
            return page
        async with sessions.begin() as db:
            api_key = None
            if key.startswith(KEY_PREFIX) and len(key) <= 128:
                api_key = await db.scalar(
                    select(ApiKey).where(
                        ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None)
                    )
                )
            if api_key is None:
                dash.door.limiter.failed(limited)
                return dash.login_page(
                    request,
                    error="That API key was not accepted. Check that you copied all of it "
                    "(it starts with “fk_”) and that it has not been revoked.",
                    status=401,
                )
            now = clock()
            api_key.last_used_at = now
            user = await db.get(User, api_key.user_id)
            assert user is not None  # the key's row cascades with its user
            record_sign_in(user, "api_key", now)
            events.record(
                db,
                actor="user",
                action="dashboard.login",
                user_id=api_key.user_id,
                details={"method": "api_key"},
                client_addr=request.client.host if request.client else None,
                user_agent=request.headers.get("user-agent"),
            )
            session_id = await open_session(
                db,
                user_id=api_key.user_id,
                api_key_id=api_key.id,
                method="api_key",
                now=now,
                max_age=session_max_age,
            )
            data = dash.codec.new(session_id)
        response = RedirectResponse(safe_next(form.get("next", "/")), status_code=303)
        dash.set_cookie(
            request, response, SESSION_COOKIE, dash.codec.dumps(data), max_age=session_max_age
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    async def logout(request: Request) -> Response:
        try:
            data = dash.codec.loads(request.cookies.get(SESSION_COOKIE))
        except SessionError:
            return RedirectResponse("/login", status_code=303)
        try:
            form = await read_form(request)
        except BadForm as exc:
            return dash.message(request, exc.status, exc.title, str(exc))
        if not csrf_matches(data.csrf, form.get(CSRF_FIELD)):
            return csrf_failure(dash, request)
        async with sessions.begin() as db:
            ended = await end_session(db, data.session_id, clock())
        response: Response = dash.login_page(request, notice="You are signed out.")
        if ended is not None and ended.method == "oidc" and dash.oidc is not None:
            # Signed out of Ferry; the provider's own session would sign the browser straight
            # back in, so it ends too where the provider offers RP-initiated logout.
            try:
                metadata = await dash.oidc.metadata()
            except ProviderUnavailable:
                metadata = None
            if metadata is not None and metadata.end_session_endpoint:
                back = dash.base_url(request) + "/login?signed_out=1"
                url = dash.oidc.end_session_url(
                    metadata,
                    post_logout_redirect_uri=back,
                    id_token_hint=ended.id_token_hint or "",
                )
                response = RedirectResponse(url, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found", status_code=404, media_type="text/plain")
        return FileResponse(STATIC / name, headers={"cache-control": "public, max-age=300"})

    routes = [
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    routes += oidc_pages.routes(dash, session_max_age=session_max_age)
    routes += request_pages.routes(dash)
    routes += import_pages.routes(dash)
    routes += credential_pages.routes(dash)
    routes += webhook_pages.routes(dash)
    routes += admin_pages.routes(dash)
    routes += audit_pages.routes(dash)
    return routes
