"""Credentials: issue (bucket, folders, TTL, token-free, CIDRs), list with usage, revoke."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from portability import events
from portability.credentials import describe, issue_for_user, rotate_for_user
from portability.dashboard.app import Ctx, Dashboard, UserError, page_form
from portability.dashboard.folders import top_folders
from portability.exports import service
from storage.validation import parse_decimal
from sts import issue as sts
from sts.issue import GRACE_DEFAULT, TTL_DEFAULT, TTL_MAX, IssueRequest

TTL_CHOICES = [
    (900, "15 minutes"),
    (3600, "1 hour"),
    (4 * 3600, "4 hours"),
    (86400, "1 day"),
    (3 * 86400, "3 days"),
    (604_800, "7 days"),
]
# Beyond a week only for token-free keys, as far as [sts] max_ttl_seconds allows.
LONG_TTL_CHOICES = [
    (30 * 86_400, "30 days (token-free only)"),
    (90 * 86_400, "90 days (token-free only)"),
    (365 * 86_400, "365 days (token-free only)"),
]
_SPLIT = re.compile(r"[\s,]+")


def issue_request_from(
    form: Any, bucket_names: list[str], *, max_ttl_seconds: int = TTL_MAX
) -> tuple[str, IssueRequest]:
    """The form's fields as an IssueRequest; prefixes only from the chosen bucket's pickers."""
    bucket = form.get("bucket")
    if bucket not in bucket_names:
        raise UserError("Choose one of your buckets.")
    prefixes = [p for p in form.getlist(f"prefix:{bucket}") if p]
    prefixes += [p.strip() for p in form.get("other_prefixes").splitlines() if p.strip()]
    try:
        ttl = parse_decimal(form.get("ttl_seconds", str(TTL_DEFAULT)))
    except ValueError:
        raise UserError("Choose how long the credential lives.") from None
    cidrs = [c for c in _SPLIT.split(form.get("allowed_cidrs")) if c]
    label = form.get("label").strip() or None
    return bucket, IssueRequest(
        prefixes=tuple(dict.fromkeys(prefixes)) or ("",),
        ttl_seconds=ttl,
        session_token=form.get("token_free") != "on",
        allowed_cidrs=tuple(cidrs),
        label=label,
        max_ttl_seconds=max_ttl_seconds,
    )


def routes(dash: Dashboard) -> list[Route]:
    async def listing(
        ctx: Ctx, error: str = "", status: int = 200, rotated: dict[str, Any] | None = None
    ) -> Response:
        buckets = await service.user_buckets(ctx.db, ctx.user.id)
        pickers = [await top_folders(dash.storage, b) for b in buckets]
        rows = await sts.list_credentials(ctx.db, now=ctx.now, user_id=ctx.user.id)
        return dash.render(
            ctx.request,
            "credentials.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=status,
            error=error,
            pickers=pickers,
            ttl_choices=TTL_CHOICES + [c for c in LONG_TTL_CHOICES if c[0] <= dash.max_ttl_seconds],
            ttl_default=TTL_DEFAULT,
            form=ctx.form,
            credentials=[describe(c, b, dash.endpoint, ctx.now) for c, b in rows],
            revoked=ctx.request.query_params.get("revoked", ""),
            rotated=rotated,
        )

    async def show(ctx: Ctx) -> Response:
        return await listing(ctx)

    async def on_error(ctx: Ctx, reason: str) -> Response:
        return await listing(ctx, error=reason, status=422)

    async def issue(ctx: Ctx) -> Response:
        buckets = await service.user_buckets(ctx.db, ctx.user.id)
        bucket, request = issue_request_from(
            page_form(ctx), [b.name for b in buckets], max_ttl_seconds=dash.max_ttl_seconds
        )
        answer = await issue_for_user(
            ctx.db, dash.master_key, ctx.user, bucket, request, endpoint=dash.endpoint, now=ctx.now
        )
        return dash.render(
            ctx.request,
            "issued.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=201,
            answers=[answer],
            request_id=None,
        )

    async def revoke(ctx: Ctx) -> Response:
        access_key_id = ctx.request.path_params["access_key_id"]
        credential = await sts.revoke(ctx.db, access_key_id, now=ctx.now, user_id=ctx.user.id)
        events.record(
            ctx.db,
            actor="user",
            action="credentials.revoke",
            user_id=ctx.user.id,
            credential_id=credential.id,
            details={"access_key_id": access_key_id, "via": "dashboard"},
            **ctx.client(),
        )
        return RedirectResponse(f"/credentials?revoked={access_key_id}", status_code=303)

    async def rotate(ctx: Ctx) -> Response:
        answer = await rotate_for_user(
            ctx.db,
            dash.master_key,
            ctx.user,
            ctx.request.path_params["access_key_id"],
            grace_seconds=GRACE_DEFAULT,
            endpoint=dash.endpoint,
            now=ctx.now,
        )
        return await listing(ctx, rotated=answer)

    return [
        Route("/credentials", dash.page(show), methods=["GET"]),
        Route(
            "/credentials/{access_key_id}/rotate",
            dash.page(rotate, on_error=on_error),
            methods=["POST"],
        ),
        Route("/credentials", dash.page(issue, on_error=on_error), methods=["POST"]),
        Route(
            "/credentials/{access_key_id}/revoke",
            dash.page(revoke, on_error=on_error),
            methods=["POST"],
        ),
    ]
