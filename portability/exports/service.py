"""Creating, describing, cancelling export requests and revoking their links: what the API,
the dashboard and the CLI share.

`create_export` validates the body, enforces one running export per user (configurable),
and for `format: "s3"` issues the pull credentials at once (a credential has exactly one
bucket, so one per bucket): the answer carries their secrets this one time, the stored
request only their descriptions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, Credential, PortabilityRequest, User
from db.outbox import request_event
from db.wakeup import announce_work
from portability import events
from portability.contract.base import Refused, parse
from portability.contract.exports import INCLUDE, ExportRequest
from portability.credentials import GatewayAddress, issue_for_user
from portability.exports.exceptions import ExportConflict, InvalidExport
from portability.exports.links import (
    LinkSigner,
    export_bucket,
    is_export_bucket,
    issue_link_credential,
    object_key,
)
from portability.exports.settings import ExportSettings
from portability.imports.handoff import build_handoff
from portability.requests import (
    ACTIVE,
    CANCELLED,
    COMPLETED,
    FAILED,
    PROCESSING,
    READY,
    iso,
    new_request,
    to_json,
    update_meta,
)
from portability.transfers import public_destination
from storage.base import Storage
from sts.issue import TTL_MAX, TTL_MIN, IssueRequest

CANCELLABLE = ("pending", PROCESSING, READY)
LINKED = (READY, COMPLETED)  # the states in which an export has download links


@dataclass(frozen=True)
class ExportOptions:
    format: str
    archive_format: str | None = None
    include: tuple[str, ...] = INCLUDE
    session_token: bool = True  # s3: credentials with a token (False: for token-less forms)

    def as_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"format": self.format}
        if self.format == "archive":
            meta.update(archive_format=self.archive_format, include=list(self.include))
        if self.format == "s3":
            meta["session_token"] = self.session_token
        return meta


def parse_export(body: Any) -> ExportOptions:
    """Validate the body of POST /api/portability/export (request_type "export")."""
    try:
        return export_options(parse(ExportRequest, body))
    except Refused as exc:
        raise InvalidExport(str(exc)) from None


def export_options(request: ExportRequest) -> ExportOptions:
    return ExportOptions(
        format=request.format,
        archive_format=(request.archive_format or "zip") if request.format == "archive" else None,
        include=request.parts(),
        session_token=request.session_token,
    )


async def user_buckets(session: AsyncSession, user_id: uuid.UUID) -> list[Bucket]:
    """The user's own buckets by name, without the system bucket holding their exports."""
    rows = await session.scalars(
        select(Bucket).where(Bucket.owner_id == user_id).order_by(Bucket.name)
    )
    return [b for b in rows.all() if not is_export_bucket(b)]


async def create_export(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    options: ExportOptions,
    *,
    settings: ExportSettings,
    endpoint: GatewayAddress,
    now: datetime,
    actor: str = "user",
    storage: Storage | None = None,
) -> tuple[PortabilityRequest, list[dict[str, Any]] | None]:
    """A pending export request; for "s3", also the issued credentials (with secrets).

    Each s3 credential's answer carries its hand-off document. With `storage` (the backend,
    to create the export bucket on first use), the documents also link the manifest: its
    link credential is issued now, so the link can be signed while the secret is at hand,
    and it answers 404 until the manifest is written.
    """
    # Lock the user's row: two simultaneous requests must not both pass the check below.
    await session.execute(select(User.id).where(User.id == user.id).with_for_update())
    if settings.max_active_per_user:
        running = await session.scalar(
            select(func.count())
            .select_from(PortabilityRequest)
            .where(
                PortabilityRequest.user_id == user.id,
                PortabilityRequest.request_type == "export",
                PortabilityRequest.status.in_(ACTIVE),
            )
        )
        if (running or 0) >= settings.max_active_per_user:
            raise ExportConflict(
                "an export of yours is still running; wait for it or cancel it first"
            )
    request = new_request(
        user.id, request_type="export", format=options.format, options=options.as_meta(), now=now
    )
    session.add(request)
    await session.flush()
    await announce_work(session)
    answers: list[dict[str, Any]] | None = None
    if options.format == "s3":
        ttl = min(max(settings.link_ttl_seconds, TTL_MIN), TTL_MAX)
        answers = []
        for bucket in await user_buckets(session, user.id):
            answers.append(
                await issue_for_user(
                    session,
                    master_key,
                    user,
                    bucket.name,
                    IssueRequest(
                        ttl_seconds=ttl,
                        session_token=options.session_token,
                        label=f"export {request.id}",
                    ),
                    endpoint=endpoint,
                    now=now,
                    actor=actor,
                )
            )
        request.expires_at = now + timedelta(seconds=ttl)
        manifest_url = None
        if storage is not None:
            manifest_url = await _manifest_link(
                session, storage, master_key, user, request, settings, ttl=ttl, now=now
            )
        for answer in answers:
            answer["handoff"] = build_handoff(answer, manifest_url=manifest_url)
        public = [
            {
                k: v
                for k, v in a.items()
                if k not in ("secret_access_key", "session_token", "snippets", "handoff")
            }
            for a in answers
        ]
        update_meta(request, credentials=public)
    events.record(
        session,
        actor=actor,
        action="export.request",
        user_id=user.id,
        details={"request_id": str(request.id), **options.as_meta()},
    )
    return request, answers


async def _manifest_link(
    session: AsyncSession,
    storage: Storage,
    master_key: bytes,
    user: User,
    request: PortabilityRequest,
    settings: ExportSettings,
    *,
    ttl: int,
    now: datetime,
) -> str:
    """A link to the manifest this s3 export will write, signed by its link credential."""
    target = await export_bucket(session, storage, user, backend_bucket=settings.exports_bucket)
    credential, secret = await issue_link_credential(
        session, master_key, user, target, request.id, ttl_seconds=ttl, now=now
    )
    update_meta(request, link_credential=credential.access_key_id)
    signer = LinkSigner(
        settings.gateway_url, settings.region, target.name, credential.access_key_id, secret
    )
    return signer.url(object_key(request.id, "manifest.json"), expires_in=ttl)


def resource(request: PortabilityRequest) -> dict[str, Any]:
    """The request resource; a transfer's destination through its public view."""
    destination = None
    if request.request_type == "transfer":
        destination = public_destination(request)
    answer = to_json(request, destination=destination)
    # Links are signed for the owner when asked (downloads.py); what a row holds is a
    # reference at most, which this resource never passes off as a link.
    meta = dict(answer["metadata"])
    if meta.get("parts") is not None:
        meta["parts"] = [{**part, "url": None} for part in meta["parts"]]
    if "manifest_url" in meta or "manifest_key" in meta:
        meta["manifest_url"] = None
    answer["metadata"] = meta
    answer["export_url"] = None
    return answer


def credential_ids(request: PortabilityRequest) -> list[str]:
    """Access key ids of every credential made for this request (links and pull)."""
    meta = request.meta or {}
    ids = [c["access_key_id"] for c in meta.get("credentials") or []]
    if meta.get("link_credential"):
        ids.append(meta["link_credential"])
    return ids


async def revoke_request_credentials(
    session: AsyncSession, request: PortabilityRequest, *, now: datetime
) -> int:
    ids = credential_ids(request)
    if not ids:
        return 0
    rows = await session.scalars(
        select(Credential).where(Credential.access_key_id.in_(ids), Credential.revoked_at.is_(None))
    )
    count = 0
    for credential in rows.all():
        credential.revoked_at = now
        count += 1
    await session.flush()
    return count


async def cancel(
    session: AsyncSession, request: PortabilityRequest, *, now: datetime, actor: str = "user"
) -> PortabilityRequest:
    """Cancel a request (export or transfer): links and pull credentials die at once.

    The worker building an export sees the status at its next heartbeat and stops; the
    transfer worker aborts its uploads; the sweeper deletes what was already stored.
    """
    if request.status in (CANCELLED,):
        return request
    if request.status not in CANCELLABLE:
        raise InvalidExport(f"a request that is {request.status} cannot be cancelled")
    request.status = CANCELLED
    request.completed_at = now
    request_event(session, "request.cancelled", request)
    revoked = await revoke_request_credentials(session, request, now=now)
    events.record(
        session,
        actor=actor,
        action=f"{request.request_type}.cancel",
        user_id=request.user_id,
        details={"request_id": str(request.id), "credentials_revoked": revoked},
    )
    await session.flush()
    return request


async def revoke_links(
    session: AsyncSession, request: PortabilityRequest, *, now: datetime, actor: str = "user"
) -> PortabilityRequest:
    """Kill every link of an export, ready or completed: its credentials are revoked.

    The request keeps its status (it was built, perhaps fetched) and gains
    `metadata.links_revoked_at`; no link is signed for it again, and the sweeper deletes its
    objects. A cancelled, failed or expired export has no live link: nothing changes. One still
    being built has none yet either, and would get them when built: cancel it instead.
    """
    if request.request_type != "export":
        raise ExportConflict("only an export has download links; cancel a transfer instead")
    if request.status in ACTIVE:
        raise ExportConflict("this export is still being built; cancel it instead")
    revoked = await revoke_request_credentials(session, request, now=now)
    if request.status in LINKED and not (request.meta or {}).get("links_revoked_at"):
        update_meta(request, links_revoked_at=iso(now))
        events.record(
            session,
            actor=actor,
            action="export.revoke_links",
            user_id=request.user_id,
            details={"request_id": str(request.id), "credentials_revoked": revoked},
        )
    await session.flush()
    return request


async def lock_request(
    session: AsyncSession, request_id: uuid.UUID, user_id: uuid.UUID | None = None
) -> PortabilityRequest | None:
    """The request, row-locked (PostgreSQL) so a concurrent writer waits for us."""
    query = (
        select(PortabilityRequest)
        .where(PortabilityRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if user_id is not None:
        query = query.where(PortabilityRequest.user_id == user_id)
    return (await session.scalars(query)).first()


DONE = (READY, COMPLETED, FAILED)
