"""Import from another provider: the form (fields or a hand-off document) and its test.

The import itself is a request like the others: once created, its page (`/requests/<id>`)
shows progress, cancel and the report.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from portability.dashboard.app import Ctx, Dashboard, page_form
from portability.dashboard.destination_check import CheckResult, check_destination
from portability.dashboard.forms import Form
from portability.dashboard.views import SECURITY_HEADERS
from portability.exports import service
from portability.imports.handoff import source_from_handoff
from portability.imports.service import create_import_request, parse_source
from sts.exceptions import InvalidRequest

_SHOWN = (
    "endpoint_url",
    "region",
    "source_bucket",
    "source_prefix",
    "access_key_id",
    "target_bucket",
    "target_prefix",
    "on_conflict",
)


def import_body(form: Form) -> dict[str, Any]:
    """The API body the form stands for: the pasted hand-off document, or the fields."""
    body: dict[str, Any] = {
        "target": {"bucket": form.get("target_bucket"), "prefix": form.get("target_prefix")},
        "on_conflict": form.get("on_conflict") or "skip_identical",
    }
    manifest_url = form.get("manifest_url").strip()
    if manifest_url:
        body["manifest_url"] = manifest_url
    handoff = form.get("handoff").strip()
    if handoff:
        try:
            body["handoff"] = json.loads(handoff)
        except ValueError:
            raise InvalidRequest(
                "The hand-off document is not JSON: paste the whole file."
            ) from None
        return body
    body["source"] = {
        "endpoint_url": form.get("endpoint_url").strip(),
        "region": form.get("region").strip() or "us-east-1",
        "bucket": form.get("source_bucket").strip(),
        "prefix": form.get("source_prefix"),
        "access_key_id": form.get("access_key_id").strip(),
        "secret_access_key": form.get("secret_access_key").strip(),
        "session_token": form.get("session_token").strip() or None,
    }
    return body


def routes(dash: Dashboard) -> list[Route]:
    async def form_page(
        ctx: Ctx, error: str = "", status: int = 200, check: CheckResult | None = None
    ) -> Response:
        buckets = await service.user_buckets(ctx.db, ctx.user.id)
        form = ctx.form or Form([])
        return dash.render(
            ctx.request,
            "import_request.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=status,
            error=error,
            check=check,
            buckets=[b.name for b in buckets],
            values={k: form.get(k) for k in _SHOWN},  # never a secret, nor the hand-off
        )

    async def show(ctx: Ctx) -> Response:
        return await form_page(ctx)

    async def on_error(ctx: Ctx, reason: str) -> Response:
        return await form_page(ctx, error=reason, status=422)

    async def create(ctx: Ctx) -> Response:
        created = await create_import_request(
            ctx.db,
            dash.master_key,
            ctx.user,
            import_body(page_form(ctx)),
            now=ctx.now,
            egress=dash.egress,
        )
        return RedirectResponse(f"/requests/{created.id}", status_code=303)

    async def test_source(ctx: Ctx) -> Response:
        try:
            body = import_body(page_form(ctx))
            if "handoff" in body:
                source = parse_source(source_from_handoff(body["handoff"])["source"])
            else:
                source = parse_source(body["source"])
        except InvalidRequest as exc:
            result = CheckResult(False, str(exc))
        else:
            result = await check_destination(source, dash.egress)
        if "application/json" in ctx.request.headers.get("accept", ""):
            return JSONResponse(
                {"ok": result.ok, "message": result.message}, headers=SECURITY_HEADERS
            )
        return await form_page(ctx, check=result, status=200 if result.ok else 422)

    return [
        Route("/imports/new", dash.page(show), methods=["GET"]),
        Route("/imports/new", dash.page(create, on_error=on_error), methods=["POST"]),
        Route("/imports/test-source", dash.page(test_source, on_error=on_error), methods=["POST"]),
    ]
