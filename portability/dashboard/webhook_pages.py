"""The dashboard's webhooks page: register an endpoint (its secret shown once), see each
endpoint's delivery log, send a delivery again, remove an endpoint."""

from __future__ import annotations

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from db.outbox import EVENTS
from portability.dashboard.app import Ctx, Dashboard, page_form
from portability.webhooks import service


def routes(dash: Dashboard) -> list[Route]:
    async def listing(
        ctx: Ctx, *, error: str = "", status: int = 200, created: dict[str, str] | None = None
    ) -> Response:
        hooks = await service.own_webhooks(ctx.db, ctx.user)
        return dash.render(
            ctx.request,
            "webhooks.html",
            user=ctx.user,
            csrf=ctx.session.csrf,
            status=status,
            error=error,
            events=EVENTS,
            created=created,
            hooks=[
                {**service.describe(h), "deliveries": await service.deliveries(ctx.db, h, 20)}
                for h in hooks
            ],
            notice=ctx.request.query_params.get("notice", ""),
        )

    async def show(ctx: Ctx) -> Response:
        return await listing(ctx)

    async def on_error(ctx: Ctx, reason: str) -> Response:
        return await listing(ctx, error=reason, status=422)

    async def create(ctx: Ctx) -> Response:
        form = page_form(ctx)
        url, events, all_users = service.check_webhook(
            form.get("url").strip(),
            form.getlist("events") or list(EVENTS),
            form.get("all_users") == "on",
            admin=ctx.user.is_admin,
        )
        hook, secret = await service.create_webhook(
            ctx.db,
            dash.master_key,
            ctx.user,
            url=url,
            events=events,
            all_users=all_users,
            egress=dash.egress,
            now=ctx.now,
        )
        return await listing(ctx, status=201, created={"url": hook.url, "secret": secret})

    async def delete(ctx: Ctx) -> Response:
        hook = await service.own_webhook(ctx.db, ctx.user, ctx.request.path_params["webhook_id"])
        await ctx.db.delete(hook)
        return RedirectResponse("/webhooks?notice=deleted", status_code=303)

    async def resend(ctx: Ctx) -> Response:
        params = ctx.request.path_params
        hook = await service.own_webhook(ctx.db, ctx.user, params["webhook_id"])
        await service.resend(ctx.db, hook, params["delivery_id"], ctx.now)
        return RedirectResponse("/webhooks?notice=resent", status_code=303)

    return [
        Route("/webhooks", dash.page(show), methods=["GET"]),
        Route("/webhooks", dash.page(create, on_error=on_error), methods=["POST"]),
        Route(
            "/webhooks/{webhook_id}/delete", dash.page(delete, on_error=on_error), methods=["POST"]
        ),
        Route(
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/resend",
            dash.page(resend, on_error=on_error),
            methods=["POST"],
        ),
    ]
