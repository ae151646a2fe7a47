"""Admin audit log search: by user, credential and time range, newest first, paginated.

Pagination is by id (keyset): "older" carries the last id shown, so pages stay exact while
the gateway keeps writing new rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.responses import Response
from starlette.routing import Route

from db.models import AuditLog, Credential, User
from portability.dashboard.app import Ctx, Dashboard, UserError
from storage.validation import parse_decimal

PAGE_SIZE = 50


def parse_moment(value: str, field: str) -> datetime | None:
    """A datetime-local value ("2026-11-27T10:00"), read as UTC."""
    if not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UserError(f"{field}: not a date and time (YYYY-MM-DDTHH:MM)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def routes(dash: Dashboard) -> list[Route]:
    async def search(ctx: Ctx) -> Response:
        params = ctx.request.query_params
        who = params.get("user", "").strip().lower()
        key = params.get("credential", "").strip().upper()
        since_text, until_text = params.get("since", ""), params.get("until", "")
        error = ""
        entries: list[dict[str, object]] = []
        older = ""
        try:
            since = parse_moment(since_text, "From")
            until = parse_moment(until_text, "Until")
            query = select(AuditLog, User.email).outerjoin(User, User.id == AuditLog.user_id)
            if who:
                user = await ctx.db.scalar(select(User).where(User.email == who))
                if user is None:
                    raise UserError(f"No user {who}.")
                query = query.where(AuditLog.user_id == user.id)
            if key:
                credential = await ctx.db.scalar(
                    select(Credential).where(Credential.access_key_id == key)
                )
                if credential is None:
                    raise UserError(f"No credential {key}.")
                query = query.where(AuditLog.credential_id == credential.id)
            if since:
                query = query.where(AuditLog.created_at >= since)
            if until:
                query = query.where(AuditLog.created_at < until)
            before = params.get("before", "")
            if before:
                try:
                    query = query.where(AuditLog.id < parse_decimal(before))
                except ValueError:
                    raise UserError("'before' must be an audit row number.") from None
            rows = (
                await ctx.db.execute(query.order_by(AuditLog.id.desc()).limit(PAGE_SIZE + 1))
            ).all()
        except UserError as exc:
            error, rows = str(exc), []
        for row, email in rows[:PAGE_SIZE]:
            entries.append({"row": row, "email": email})
        if len(rows) > PAGE_SIZE:
            kept = {k: v for k, v in params.items() if k != "before" and v}
            older = "/admin/audit?" + urlencode({**kept, "before": rows[PAGE_SIZE - 1][0].id})
        return dash.render(
            ctx.request,
            "audit.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=422 if error else 200,
            error=error,
            entries=entries,
            older=older,
            first_page="before" in params,
            values={"user": who, "credential": key, "since": since_text, "until": until_text},
        )

    return [Route("/admin/audit", dash.page(search, admin=True), methods=["GET"])]
