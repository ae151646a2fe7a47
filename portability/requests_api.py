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

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from db.models import PortabilityRequest, User
from portability.contract.base import parse
from portability.contract.exports import ExportRequest
from portability.contract.imports import ImportRequest
from portability.contract.operations import Operation, Param, Reply
from portability.contract.requests import (
    CreatedRequest,
    OverdueRequests,
    RequestList,
)
from portability.contract.requests import PortabilityRequest as RequestAnswer
from portability.contract.transfers import TransferRequest
from portability.exports import downloads, service
from portability.exports.exceptions import InvalidExport
from portability.http import ApiError, body_json
from portability.imports.service import create_import_request
from portability.requests import get_for_user, iso, list_for_user, overdue_requests
from portability.state import api_state
from portability.transfers import create_transfer_request

NO_STORE = {"cache-control": "no-store"}
REQUEST_ID = Param("request_id", "The request's id (a UUID).")


async def own(session: AsyncSession, request: Request, user: User) -> PortabilityRequest:
    """The caller's request of the path; anyone else's is as missing as a missing one."""
    found = await get_for_user(session, request.path_params["request_id"], user.id)
    if found is None:
        raise ApiError(404, "not_found", "no such request")
    return found


async def create(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    body = await body_json(request)
    kind = body.get("request_type", "export") if isinstance(body, dict) else None
    now = state.clock()
    if kind == "transfer":
        created = await create_transfer_request(
            session,
            state.master_key,
            user,
            parse(TransferRequest, body),
            now=now,
            egress=state.egress,
        )
        return JSONResponse(service.resource(created), status_code=202, headers=NO_STORE)
    if kind != "export":
        raise InvalidExport("request_type must be 'export' or 'transfer'")
    created, credentials = await service.create_export(
        session,
        state.master_key,
        user,
        service.export_options(parse(ExportRequest, body)),
        settings=state.export_settings,
        endpoint=state.endpoint,
        now=now,
        storage=state.storage,
    )
    answer = service.resource(created)
    if credentials is not None:
        answer["credentials"] = credentials  # secrets: in this answer only
    return JSONResponse(answer, status_code=202, headers=NO_STORE)


async def create_import(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    body = parse(ImportRequest, await body_json(request))
    created = await create_import_request(
        session, state.master_key, user, body, now=state.clock(), egress=state.egress
    )
    return JSONResponse(service.resource(created), status_code=202, headers=NO_STORE)


async def list_own(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    rows = await list_for_user(session, user.id)
    answers = await downloads.owner_resources(
        session, state.master_key, state.export_settings, rows, now=state.clock()
    )
    return JSONResponse({"requests": answers}, headers=NO_STORE)


async def show(request: Request, session: AsyncSession, user: User) -> Response:
    state = api_state(request)
    found = await own(session, request, user)
    answer = await downloads.owner_resource(
        session, state.master_key, state.export_settings, found, now=state.clock()
    )
    return JSONResponse(answer, headers=NO_STORE)


async def cancel(request: Request, session: AsyncSession, user: User) -> Response:
    found = await own(session, request, user)
    locked = await service.lock_request(session, found.id, user.id)
    assert locked is not None
    done = await service.cancel(session, locked, now=api_state(request).clock())
    return JSONResponse(service.resource(done), status_code=202)


async def revoke_links(request: Request, session: AsyncSession, user: User) -> Response:
    found = await own(session, request, user)
    locked = await service.lock_request(session, found.id, user.id)
    assert locked is not None
    done = await service.revoke_links(session, locked, now=api_state(request).clock())
    return JSONResponse(service.resource(done))


async def overdue(request: Request, session: AsyncSession, admin: User) -> Response:
    now = api_state(request).clock()
    late = [
        {
            **service.resource(found.request),
            "due_at": (found.request.meta or {})["due_at"],  # as stored
            "overdue_days": (now - found.due_at).days,
            "user_email": found.owner.email if found.owner else None,
        }
        for found in await overdue_requests(session, now)
    ]
    return JSONResponse({"now": iso(now), "requests": late})


def _follow(pointer: str, *names: str) -> dict[str, tuple[str, str, str]]:
    targets = {
        "show": "getRequest",
        "cancel": "cancelRequest",
        "revoke_links": "revokeRequestLinks",
    }
    return {name: (targets[name], "request_id", pointer) for name in names}


OPERATIONS = [
    Operation(
        "post",
        "/api/portability/export",
        "createRequest",
        "requests",
        "Ask for an export (request_type `export`, the default) or a transfer",
        create,
        {
            202: Reply(
                CreatedRequest,
                "Accepted; the worker takes it from here.",
                links=_follow("/id", "show", "cancel", "revoke_links"),
            )
        },
        ("Conflict",),
        body=(ExportRequest, TransferRequest),
    ),
    Operation(
        "post",
        "/api/portability/import",
        "createImport",
        "requests",
        "Import objects from another provider into one of the caller's buckets",
        create_import,
        {
            202: Reply(
                RequestAnswer,
                "Accepted; a worker takes it from here.",
                links=_follow("/id", "show", "cancel"),
            )
        },
        body=(ImportRequest,),
    ),
    Operation(
        "get",
        "/api/portability/requests",
        "listRequests",
        "requests",
        "The caller's requests, newest first",
        list_own,
        {
            200: Reply(
                RequestList,
                "The requests.",
                links=_follow("/requests/0/id", "show", "cancel", "revoke_links"),
            )
        },
    ),
    Operation(
        "get",
        "/api/portability/requests/{request_id}",
        "getRequest",
        "requests",
        "One of the caller's requests (anyone else's is 404, like a missing one)",
        show,
        {200: Reply(RequestAnswer, "The request.")},
        ("NotFound",),
        parameters=(REQUEST_ID,),
    ),
    Operation(
        "post",
        "/api/portability/requests/{request_id}/revoke-links",
        "revokeRequestLinks",
        "requests",
        "Revoke every download link of a ready or completed export",
        revoke_links,
        {200: Reply(RequestAnswer, "Revoked (or already was).")},
        ("NotFound", "Conflict"),
        parameters=(REQUEST_ID,),
        description="Every link of the export (and, for format `s3`, its pull credentials) "
        "is refused by the gateway within a second. The request keeps its status and gains "
        "`metadata.links_revoked_at`; no link is signed for it again and its files are "
        "deleted. A cancelled, failed or expired export has no live link and is answered as "
        "it is. An export still being built answers 409 (cancel it instead), as does a "
        "transfer.",
    ),
    Operation(
        "post",
        "/api/portability/requests/{request_id}/cancel",
        "cancelRequest",
        "requests",
        "Cancel a request that is pending, processing or ready; its links and credentials "
        "stop working at once",
        cancel,
        {202: Reply(RequestAnswer, "Cancelled (or already was).")},
        ("NotFound", "Invalid"),
        parameters=(REQUEST_ID,),
    ),
    Operation(
        "get",
        "/api/admin/requests/overdue",
        "adminOverdueRequests",
        "admin",
        "Requests still unanswered past their due date (GDPR Article 12(3): one month)",
        overdue,
        {200: Reply(OverdueRequests, "The late requests, oldest first.")},
        access="admin",
    ),
]
