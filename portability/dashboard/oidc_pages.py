"""Sign-in through the provider's OpenID Connect provider (authorization code + PKCE).

GET /login/oidc             start: state, nonce and PKCE verifier into a signed cookie, then
                            off to the provider's authorization endpoint
GET /login/oidc/callback    the provider sends the browser back with a code: the state is
                            checked against the cookie, the code exchanged (with the
                            verifier), the ID token checked (signature, issuer, audience,
                            expiry, nonce), the user found by email, a session opened

Each way this can fail is a page saying what happened and what to do; none is a trace.
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from portability import events
from portability.dashboard.app import Dashboard, safe_next
from portability.dashboard.session_store import open_session
from portability.dashboard.sessions import LOGIN_CSRF_COOKIE, SESSION_COOKIE
from portability.oidc.exceptions import (
    AccountRefused,
    ProviderUnavailable,
    SignInRefused,
    TokenInvalid,
)
from portability.oidc.flow import FLOW_COOKIE, FlowCodec, FlowError
from portability.oidc.identity import account_for, identity_from_claims, record_sign_in
from portability.oidc.provider import OidcClient

log = logging.getLogger("ferry.dashboard")
CALLBACK = "/login/oidc/callback"


def routes(dash: Dashboard, *, session_max_age: int) -> list[Route]:
    if dash.oidc is None:
        return []
    oidc: OidcClient = dash.oidc
    flows = FlowCodec(dash.master_key, clock=dash.clock)
    name = oidc.settings.display_name

    def unavailable(request: Request, exc: ProviderUnavailable) -> Response:
        log.warning("identity provider unavailable: %s", exc)
        return dash.login_page(
            request,
            error=f"{name} could not be reached just now, so Ferry cannot sign you in with it. "
            "Please try again in a minute.",
            status=503,
        )

    def refused(request: Request, text: str, *, status: int = 400) -> Response:
        response = dash.login_page(request, error=text, status=status)
        response.delete_cookie(FLOW_COOKIE, path="/login/oidc")
        return response

    async def start(request: Request) -> Response:
        flow = flows.new(safe_next(request.query_params.get("next", "/")))
        redirect_uri = dash.base_url(request) + CALLBACK
        try:
            url = await oidc.authorization_url(
                redirect_uri=redirect_uri,
                state=flow.state,
                nonce=flow.nonce,
                code_challenge=flow.code_challenge,
            )
        except ProviderUnavailable as exc:
            return unavailable(request, exc)
        response = RedirectResponse(url, status_code=303)
        # Only the callback ever reads the flow cookie.
        dash.set_cookie(
            request,
            response,
            FLOW_COOKIE,
            flows.dumps(flow),
            max_age=flows.max_age,
            path="/login/oidc",
        )
        return response

    async def callback(request: Request) -> Response:
        params = request.query_params
        try:
            flow = flows.loads(request.cookies.get(FLOW_COOKIE))
        except FlowError:
            return refused(
                request,
                "This sign-in is not one this browser started, or it took longer than ten "
                f"minutes. Please start again with “Sign in with {name}”.",
            )
        if params.get("error"):
            # A refusal grants nothing, so it is shown even where the provider leaves the
            # state out of its error answer (some do, against RFC 6749 4.1.2.1).
            reason = params.get("error_description") or params["error"]
            error = params["error"][:60]
            return refused(
                request, f"{name} did not sign you in ({error}: {reason[:200]}).", status=401
            )
        if not hmac.compare_digest(params.get("state", "").encode(), flow.state.encode()):
            log.warning("OIDC callback with a state that is not this browser's")
            return refused(
                request,
                "The answer from the sign-in does not belong to the sign-in this browser "
                "started (its state differs), so it was not accepted. Please start again.",
            )
        code = params.get("code", "")
        if not code:
            return refused(request, f"{name} sent the browser back without a sign-in code.")
        try:
            id_token = await oidc.exchange_code(
                code, verifier=flow.verifier, redirect_uri=dash.base_url(request) + CALLBACK
            )
            claims = await oidc.verify_id_token(id_token, nonce=flow.nonce)
            identity = identity_from_claims(claims, oidc.settings)
        except ProviderUnavailable as exc:
            return unavailable(request, exc)
        except (SignInRefused, TokenInvalid) as exc:
            log.warning("OIDC sign-in refused: %s", exc)
            return refused(
                request,
                f"The sign-in with {name} could not be accepted: {exc}. Please start again.",
                status=401,
            )
        except AccountRefused as exc:
            return refused(request, f"You cannot sign in to Ferry: {exc}", status=403)
        now = dash.clock()
        try:
            async with dash.sessions.begin() as db:
                user = await account_for(db, identity, oidc.settings)
                record_sign_in(user, "oidc", now)
                events.record(
                    db,
                    actor="user",
                    action="dashboard.login",
                    user_id=user.id,
                    details={"method": "oidc", "subject": identity.subject},
                    client_addr=request.client.host if request.client else None,
                    user_agent=request.headers.get("user-agent"),
                )
                session_id = await open_session(
                    db,
                    user_id=user.id,
                    api_key_id=None,
                    method="oidc",
                    now=now,
                    max_age=session_max_age,
                    id_token_hint=id_token,
                )
        except AccountRefused as exc:
            return refused(request, f"You cannot sign in to Ferry: {exc}", status=403)
        response = RedirectResponse(flow.next, status_code=303)
        data = dash.codec.new(session_id)
        dash.set_cookie(
            request, response, SESSION_COOKIE, dash.codec.dumps(data), max_age=session_max_age
        )
        response.delete_cookie(FLOW_COOKIE, path="/login/oidc")
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    return [
        Route("/login/oidc", start, methods=["GET"]),
        Route(CALLBACK, callback, methods=["GET"]),
    ]
