"""The admin console: every active credential (revoke one, or all of a user); overdue requests;
signing a user out of every dashboard session; how each user last signed in."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from db.models import User
from portability import events
from portability.credentials import describe
from portability.dashboard.app import Ctx, Dashboard, UserError, page_form
from portability.dashboard.request_pages import title_of
from portability.dashboard.session_store import end_all_sessions
from portability.exports import service
from portability.requests import overdue_requests
from sts import issue as sts


async def overdue(db: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    """Article 12(3): requests still unanswered (or failed) after their due date."""
    late = []
    for found in await overdue_requests(db, now):
        resource = service.resource(found.request)
        late.append(
            {
                "id": str(found.request.id),
                "title": title_of(resource),
                "status": found.request.status,
                "email": found.owner.email if found.owner else "?",
                "created_at": resource["created_at"],
                "due_at": found.due_at,
                "days": (now - found.due_at).days,
            }
        )
    return late


SIGN_IN_LABELS = {"oidc": "OpenID Connect", "api_key": "API key"}
USERS_SHOWN = 200


async def sign_ins(db: AsyncSession) -> list[dict[str, Any]]:
    """Users, the most recently signed-in first: how (OIDC or API key) and when."""
    rows = await db.scalars(
        select(User)
        .order_by(User.last_sign_in_at.desc().nulls_last(), User.email)
        .limit(USERS_SHOWN)
    )
    return [
        {
            "email": u.email,
            "is_admin": u.is_admin,
            "method": SIGN_IN_LABELS.get(u.last_sign_in_method or "", "never signed in"),
            "at": u.last_sign_in_at,
        }
        for u in rows.all()
    ]


def routes(dash: Dashboard) -> list[Route]:
    async def console(ctx: Ctx, error: str = "", status: int = 200) -> Response:
        rows = await sts.list_credentials(ctx.db, now=ctx.now, active_only=True)
        emails: dict[uuid.UUID, str] = {}
        for credential, _ in rows:
            if credential.user_id not in emails:
                owner = await ctx.db.get(User, credential.user_id)
                emails[credential.user_id] = owner.email if owner else "?"
        credentials = [
            {**describe(c, b, dash.endpoint, ctx.now), "email": emails[c.user_id]} for c, b in rows
        ]
        users = sorted({(c["email"], c["user_id"]) for c in credentials})
        return dash.render(
            ctx.request,
            "admin.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=status,
            error=error,
            credentials=credentials,
            users=users,
            overdue=await overdue(ctx.db, ctx.now),
            sign_ins=await sign_ins(ctx.db),
            notice=ctx.request.query_params.get("notice", ""),
        )

    async def show(ctx: Ctx) -> Response:
        return await console(ctx)

    async def on_error(ctx: Ctx, reason: str) -> Response:
        return await console(ctx, error=reason, status=422)

    async def revoke(ctx: Ctx) -> Response:
        access_key_id = ctx.request.path_params["access_key_id"]
        credential = await sts.revoke(ctx.db, access_key_id, now=ctx.now)
        events.record(
            ctx.db,
            actor="admin",
            action="credentials.revoke",
            user_id=credential.user_id,
            credential_id=credential.id,
            details={"access_key_id": access_key_id, "admin": ctx.user.email, "via": "dashboard"},
            **ctx.client(),
        )
        return RedirectResponse("/admin?notice=revoked", status_code=303)

    async def revoke_user(ctx: Ctx) -> Response:
        try:
            target = await ctx.db.get(User, uuid.UUID(ctx.request.path_params["user_id"]))
        except ValueError:
            target = None
        if target is None:
            raise UserError("There is no such user.", status=404)
        count = await sts.revoke_all(ctx.db, target.id, now=ctx.now)
        events.record(
            ctx.db,
            actor="admin",
            action="credentials.revoke_all",
            user_id=target.id,
            details={"revoked": count, "admin": ctx.user.email, "via": "dashboard"},
            **ctx.client(),
        )
        return RedirectResponse("/admin?notice=revoked-all", status_code=303)

    async def end_sessions(ctx: Ctx) -> Response:
        email = page_form(ctx).get("email").strip().lower()
        target = await ctx.db.scalar(select(User).where(User.email == email))
        if target is None:
            raise UserError(f"There is no user {email!r}.", status=404)
        ended = await end_all_sessions(ctx.db, target.id, ctx.now)
        events.record(
            ctx.db,
            actor="admin",
            action="dashboard.sign_out_everywhere",
            user_id=target.id,
            details={"ended": ended, "admin": ctx.user.email, "via": "dashboard"},
            **ctx.client(),
        )
        return RedirectResponse("/admin?notice=signed-out", status_code=303)

    return [
        Route("/admin", dash.page(show, admin=True), methods=["GET"]),
        Route(
            "/admin/sessions/end",
            dash.page(end_sessions, admin=True, on_error=on_error),
            methods=["POST"],
        ),
        Route(
            "/admin/credentials/{access_key_id}/revoke",
            dash.page(revoke, admin=True, on_error=on_error),
            methods=["POST"],
        ),
        Route(
            "/admin/users/{user_id}/revoke-credentials",
            dash.page(revoke_user, admin=True, on_error=on_error),
            methods=["POST"],
        ),
    ]
