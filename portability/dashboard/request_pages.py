"""The overview, new requests (export, pull credentials, transfer) and a request's page."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from db.models import PortabilityRequest
from portability.dashboard.app import Ctx, Dashboard, UserError, page_form
from portability.dashboard.destination_check import CheckResult, check_destination
from portability.dashboard.forms import Form
from portability.dashboard.views import SECURITY_HEADERS, parse_time, percent
from portability.exports import downloads, service
from portability.requests import ACTIVE, get_for_user, list_for_user
from portability.transfers import create_transfer_request, parse_destination
from sts.exceptions import InvalidRequest

KINDS = ("json", "archive", "s3", "transfer")


def title_of(resource: dict[str, Any]) -> str:
    meta = resource.get("metadata") or {}
    if resource["request_type"] == "transfer":
        dest = resource.get("transfer_destination") or {}
        host = urlsplit(str(dest.get("endpoint_url") or "")).netloc
        return f"Transfer to {dest.get('bucket', '?')} on {host or '?'}"
    if resource["request_type"] == "import":
        source = (meta.get("options") or {}).get("source") or {}
        host = urlsplit(str(source.get("endpoint_url") or "")).netloc
        return f"Import from {source.get('bucket', '?')} on {host or '?'}"
    fmt = resource.get("format")
    if fmt == "archive":
        options = meta.get("options") or {}
        return f"Archive export ({options.get('archive_format') or 'zip'})"
    if fmt == "s3":
        return "Pull credentials (S3)"
    return "Personal data (JSON)"


def view(resource: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the pages and the polling script show of a request resource."""
    meta = resource.get("metadata") or {}
    progress = meta.get("progress") or {}
    status = resource["status"]
    expires = parse_time(resource.get("expires_at"))
    parts = meta.get("parts") or []
    downloads = [
        {"url": p.get("url"), "size": p.get("size"), "label": f"Part {i} of {len(parts)}"}
        for i, p in enumerate(parts, 1)
        if p.get("url")
    ]
    if len(downloads) == 1:
        downloads[0]["label"] = "Download"
    if not downloads and resource.get("export_url"):
        downloads = [{"url": resource["export_url"], "size": None, "label": "Download"}]
    live = status in service.LINKED and (expires is None or expires > now)
    return {
        "id": resource["id"],
        "title": title_of(resource),
        "request_type": resource["request_type"],
        "status": status,
        "active": status in ACTIVE,
        # Revoked links leave nothing a cancel would stop.
        "cancellable": status in service.CANCELLABLE and not meta.get("links_revoked_at"),
        "links_revoked_at": meta.get("links_revoked_at"),
        "links_revocable": live
        and resource["request_type"] == "export"
        and not meta.get("links_revoked_at"),
        "created_at": resource.get("created_at"),
        "completed_at": resource.get("completed_at"),
        "expires_at": resource.get("expires_at"),
        "due_at": meta.get("due_at"),
        "percent": 100
        if status in ("ready", "completed")
        else percent(progress.get("bytes_done"), progress.get("bytes_total")),
        "progress": {
            "bytes_done": progress.get("bytes_done") or 0,
            "bytes_total": progress.get("bytes_total") or 0,
            "objects_done": progress.get("objects_done") or 0,
            "objects_total": progress.get("objects_total") or 0,
            "bytes_per_second": progress.get("bytes_per_second") or 0,
            "eta_seconds": progress.get("eta_seconds"),
        },
        "downloads": downloads if live else [],
        "manifest_url": meta.get("manifest_url") if live else None,
        "error": meta.get("error"),
        "report": meta.get("report") or None,
        "destination": resource.get("transfer_destination"),
        "source": (meta.get("options") or {}).get("source")
        if resource["request_type"] == "import"
        else None,
        "target": (meta.get("options") or {}).get("target") or {},
        "credentials": meta.get("credentials") or [],
    }


def export_body(form: Form) -> dict[str, Any]:
    kind = form.get("kind")
    if kind == "json":
        return {"request_type": "export", "format": "json"}
    if kind == "archive":
        include = form.getlist("include") or ["personal", "files"]
        return {
            "request_type": "export",
            "format": "archive",
            "archive_format": form.get("archive_format", "zip"),
            "include": include,
        }
    if kind == "s3":
        return {
            "request_type": "export",
            "format": "s3",
            "session_token": form.get("token_free") != "on",
        }
    raise UserError("Choose what you want: JSON, an archive, pull credentials or a transfer.")


def transfer_body(form: Form) -> dict[str, Any]:
    return {
        "request_type": "transfer",
        "source": {"bucket": form.get("source_bucket"), "prefix": form.get("source_prefix")},
        "destination": {
            "endpoint_url": form.get("endpoint_url").strip(),
            "region": form.get("region").strip() or "us-east-1",
            "bucket": form.get("dest_bucket").strip(),
            "prefix": form.get("dest_prefix"),
            "access_key_id": form.get("access_key_id").strip(),
            "secret_access_key": form.get("secret_access_key").strip(),
            "session_token": form.get("session_token").strip() or None,
        },
    }


def routes(dash: Dashboard) -> list[Route]:
    async def signed(rows: list[PortabilityRequest], ctx: Ctx) -> list[dict[str, Any]]:
        """The views of the user's own requests, with links signed for this page."""
        answers = await downloads.owner_resources(
            ctx.db, dash.master_key, dash.settings, rows, now=ctx.now
        )
        return [view(answer, ctx.now) for answer in answers]

    async def overview(ctx: Ctx) -> Response:
        rows = await list_for_user(ctx.db, ctx.user.id)
        return dash.render(
            ctx.request,
            "overview.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            requests=await signed(rows, ctx),
        )

    async def new_form(
        ctx: Ctx, error: str = "", status: int = 200, check: CheckResult | None = None
    ) -> Response:
        buckets = await service.user_buckets(ctx.db, ctx.user.id)
        form = ctx.form or Form([])
        return dash.render(
            ctx.request,
            "new_request.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=status,
            error=error,
            check=check,
            buckets=[b.name for b in buckets],
            # Never echo secrets back into the page.
            values={
                k: form.get(k)
                for k in (
                    "kind",
                    "archive_format",
                    "endpoint_url",
                    "region",
                    "dest_bucket",
                    "dest_prefix",
                    "source_bucket",
                    "source_prefix",
                    "access_key_id",
                )
            },
        )

    async def show_new(ctx: Ctx) -> Response:
        return await new_form(ctx)

    async def on_error(ctx: Ctx, reason: str) -> Response:
        return await new_form(ctx, error=reason, status=422)

    async def create(ctx: Ctx) -> Response:
        form = page_form(ctx)
        if form.get("kind") == "transfer":
            created = await create_transfer_request(
                ctx.db,
                dash.master_key,
                ctx.user,
                transfer_body(form),
                now=ctx.now,
                egress=dash.egress,
            )
            return RedirectResponse(f"/requests/{created.id}", status_code=303)
        options = service.parse_export(export_body(form))
        created, answers = await service.create_export(
            ctx.db,
            dash.master_key,
            ctx.user,
            options,
            settings=dash.settings,
            endpoint=dash.endpoint,
            now=ctx.now,
            storage=dash.storage,
        )
        if answers is not None:
            return dash.render(
                ctx.request,
                "issued.html",
                user=ctx.user,
                csrf=ctx.session.csrf,
                status=201,
                answers=answers,
                request_id=str(created.id),
            )
        return RedirectResponse(f"/requests/{created.id}", status_code=303)

    async def test_destination(ctx: Ctx) -> Response:
        try:
            destination = parse_destination(transfer_body(page_form(ctx))["destination"])
        except InvalidRequest as exc:
            result = CheckResult(False, str(exc))
        else:
            result = await check_destination(destination, dash.egress)
        if "application/json" in ctx.request.headers.get("accept", ""):
            return JSONResponse(
                {"ok": result.ok, "message": result.message}, headers=SECURITY_HEADERS
            )
        return await new_form(ctx, check=result, status=200 if result.ok else 422)

    async def find_own(ctx: Ctx) -> PortabilityRequest:
        found = await get_for_user(ctx.db, ctx.request.path_params["request_id"], ctx.user.id)
        if found is None:
            raise UserError("There is no such request among yours.", status=404)
        return found

    async def own(ctx: Ctx) -> dict[str, Any]:
        return (await signed([await find_own(ctx)], ctx))[0]

    async def lock_own(ctx: Ctx) -> PortabilityRequest:
        found = await find_own(ctx)
        locked = await service.lock_request(ctx.db, found.id, ctx.user.id)
        assert locked is not None
        return locked

    async def show(ctx: Ctx) -> Response:
        item = await own(ctx)
        return dash.render(
            ctx.request, "request.html", user=ctx.user, csrf=ctx.session.csrf, item=item
        )

    async def status_json(ctx: Ctx) -> Response:
        return JSONResponse(await own(ctx), headers=SECURITY_HEADERS)

    async def cancel(ctx: Ctx) -> Response:
        locked = await lock_own(ctx)
        await service.cancel(ctx.db, locked, now=ctx.now)
        return RedirectResponse(f"/requests/{locked.id}", status_code=303)

    async def revoke_links(ctx: Ctx) -> Response:
        locked = await lock_own(ctx)
        await service.revoke_links(ctx.db, locked, now=ctx.now)
        return RedirectResponse(f"/requests/{locked.id}", status_code=303)

    return [
        Route("/", dash.page(overview), methods=["GET"]),
        Route("/requests/new", dash.page(show_new), methods=["GET"]),
        Route("/requests/new", dash.page(create, on_error=on_error), methods=["POST"]),
        Route(
            "/requests/test-destination",
            dash.page(test_destination, on_error=on_error),
            methods=["POST"],
        ),
        Route("/requests/{request_id}", dash.page(show), methods=["GET"]),
        Route("/requests/{request_id}/status.json", dash.page(status_json), methods=["GET"]),
        Route("/requests/{request_id}/cancel", dash.page(cancel), methods=["POST"]),
        Route("/requests/{request_id}/revoke-links", dash.page(revoke_links), methods=["POST"]),
    ]
