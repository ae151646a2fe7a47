"""REST routes of portability requests (exports and transfers), mounted into the API app.

    POST /api/portability/export                  202: a new export or transfer request
    GET  /api/portability/requests                the caller's requests, newest first
    GET  /api/portability/requests/{id}           one of them (404 for anyone else's)
    POST /api/portability/requests/{id}/cancel    202: cancelled; links and credentials die
    POST /api/portability/requests/{id}/revoke-links  200: a ready or completed export's
                                                  links and credentials die; its files go
    GET  /api/admin/requests/overdue              Article 12(3): unanswered past their due date

Authentication and errors follow `portability.api`: a Bearer API key, one transaction per
request, `{"error": {"code", "message"}}`. Another user's request id answers 404, exactly
like a missing one, so ids cannot be probed. Download links are signed in the owner's
answers only (`portability.exports.downloads`); the database holds none.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from db.models import PortabilityRequest, User
from portability.credentials import GatewayAddress
from portability.exports import downloads, service
from portability.exports.exceptions import InvalidExport
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from portability.http import ApiError, Handler, RouteEndpoint, authed, body_json
from portability.imports.service import create_import_request
from portability.requests import ACTIVE, FAILED, get_for_user, iso, list_for_user
from portability.transfers import create_transfer_request
from storage.base import Storage
from storage.egress import EgressPolicy

_NO_STORE = {"cache-control": "no-store"}


def request_routes(
    *,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    master_key: bytes,
    settings: ExportSettings,
    endpoint: GatewayAddress,
    egress: EgressPolicy,
    door: DoorPolicy,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    """The routes; `storage` creates the export bucket when an s3 export's hand-off links
    its manifest."""

    def guarded(handler: Handler, *, admin: bool = False) -> RouteEndpoint:
        return authed(sessions, handler, admin=admin, door=door)

    async def own(session: AsyncSession, request: Request, user: User) -> PortabilityRequest:
        found = await get_for_user(session, request.path_params["request_id"], user.id)
        if found is None:
            raise ApiError(404, "not_found", "no such request")
        return found

    async def create(request: Request, session: AsyncSession, user: User) -> Response:
        body = await body_json(request)
        kind = body.get("request_type", "export") if isinstance(body, dict) else None
        now = clock()
        if kind == "transfer":
            created = await create_transfer_request(
                session, master_key, user, body, now=now, egress=egress
            )
            return JSONResponse(service.resource(created), status_code=202, headers=_NO_STORE)
        if kind != "export":
            raise InvalidExport("request_type must be 'export' or 'transfer'")
        options = service.parse_export(body)
        created, credentials = await service.create_export(
            session,
            master_key,
            user,
            options,
            settings=settings,
            endpoint=endpoint,
            now=now,
            storage=storage,
        )
        answer = service.resource(created)
        if credentials is not None:
            answer["credentials"] = credentials  # secrets: in this answer only
        return JSONResponse(answer, status_code=202, headers=_NO_STORE)

    async def create_import(request: Request, session: AsyncSession, user: User) -> Response:
        body = await body_json(request)
        if isinstance(body, dict) and body.get("request_type", "import") != "import":
            raise InvalidExport("request_type must be 'import' here")
        created = await create_import_request(
            session, master_key, user, body, now=clock(), egress=egress
        )
        return JSONResponse(service.resource(created), status_code=202, headers=_NO_STORE)

    async def list_own(request: Request, session: AsyncSession, user: User) -> Response:
        rows = await list_for_user(session, user.id)
        answers = await downloads.owner_resources(session, master_key, settings, rows, now=clock())
        return JSONResponse({"requests": answers}, headers=_NO_STORE)

    async def show(request: Request, session: AsyncSession, user: User) -> Response:
        found = await own(session, request, user)
        answer = await downloads.owner_resource(session, master_key, settings, found, now=clock())
        return JSONResponse(answer, headers=_NO_STORE)

    async def cancel(request: Request, session: AsyncSession, user: User) -> Response:
        found = await own(session, request, user)
        locked = await service.lock_request(session, found.id, user.id)
        assert locked is not None
        done = await service.cancel(session, locked, now=clock())
        return JSONResponse(service.resource(done), status_code=202)

    async def revoke_links(request: Request, session: AsyncSession, user: User) -> Response:
        found = await own(session, request, user)
        locked = await service.lock_request(session, found.id, user.id)
        assert locked is not None
        done = await service.revoke_links(session, locked, now=clock())
        return JSONResponse(service.resource(done))

    async def overdue(request: Request, session: AsyncSession, admin: User) -> Response:
        now = clock()
        rows = await session.scalars(
            select(PortabilityRequest)
            .where(PortabilityRequest.status.in_((*ACTIVE, FAILED)))
            .order_by(PortabilityRequest.created_at)
        )
        late = []
        for row in rows.all():
            due = (row.meta or {}).get("due_at")
            if not due:
                continue
            due_at = datetime.fromisoformat(str(due).replace("Z", "+00:00"))
            if due_at <= now:
                user = await session.get(User, row.user_id)
                late.append(
                    {
                        **service.resource(row),
                        "due_at": due,
                        "overdue_days": (now - due_at).days,
                        "user_email": user.email if user else None,
                    }
                )
        return JSONResponse({"now": iso(now), "requests": late})

    return [
        Route("/api/portability/export", guarded(create), methods=["POST"]),
        Route("/api/portability/import", guarded(create_import), methods=["POST"]),
        Route("/api/portability/requests", guarded(list_own), methods=["GET"]),
        Route("/api/portability/requests/{request_id}", guarded(show), methods=["GET"]),
        Route("/api/portability/requests/{request_id}/cancel", guarded(cancel), methods=["POST"]),
        Route(
            "/api/portability/requests/{request_id}/revoke-links",
            guarded(revoke_links),
            methods=["POST"],
        ),
        Route("/api/admin/requests/overdue", guarded(overdue, admin=True), methods=["GET"]),
    ]
