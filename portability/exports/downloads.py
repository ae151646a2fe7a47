"""Download links, signed when the owner asks: no working link rests in the database.

The worker stores what a link is made of: the object keys (`metadata.parts[].key`,
`metadata.manifest_key`) and the access key id of the request's internal credential
(`metadata.link_credential`), whose secret is sealed in the credentials table. The
`export_url` column holds the first object's unsigned gateway URL, a reference the gateway
refuses. A database dump, the outbox or a log therefore opens no download.

When the owner reads the request (the API, the dashboard, the CLI), `owner_resources`
unseals the secret and presigns each link for as long as the export, the credential and
`link_ttl_seconds` all allow, whichever ends first. A revoked or expired credential, revoked
links (`metadata.links_revoked_at`) or a request that is not ready or completed give no links:
`url`, `manifest_url` and `export_url` are null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Credential, PortabilityRequest
from portability.exports.links import LinkSigner, bucket_name
from portability.exports.service import LINKED, resource
from portability.exports.settings import ExportSettings
from sts.exceptions import Unsealable
from sts.sealing import unseal


def link_seconds(
    request: PortabilityRequest, credential: Credential, settings: ExportSettings, now: datetime
) -> int:
    """How long a link signed now may live: 0 when it may not be made at all."""
    if credential.revoked_at is not None or credential.not_before > now:
        return 0
    ends = [credential.expires_at]
    if request.expires_at is not None:
        ends.append(request.expires_at)
    left = int((min(ends) - now).total_seconds())
    return max(0, min(left, settings.link_ttl_seconds))


async def _credentials(
    session: AsyncSession, requests: Sequence[PortabilityRequest]
) -> dict[str, Credential]:
    keys = {
        str(key)
        for r in requests
        if r.status in LINKED and (key := (r.meta or {}).get("link_credential"))
    }
    if not keys:
        return {}
    rows = await session.scalars(select(Credential).where(Credential.access_key_id.in_(keys)))
    return {c.access_key_id: c for c in rows.all()}


def _signed(
    request: PortabilityRequest,
    answer: dict[str, Any],
    credential: Credential | None,
    master_key: bytes,
    settings: ExportSettings,
    now: datetime,
) -> dict[str, Any]:
    meta = request.meta or {}
    if credential is None or meta.get("links_revoked_at") or request.status not in LINKED:
        return answer
    seconds = link_seconds(request, credential, settings, now)
    if seconds <= 0:
        return answer
    try:
        secret = unseal(master_key, credential.access_key_id, credential.secret_sealed)
    except Unsealable:
        return answer  # another master key: no link rather than a broken one
    signer = LinkSigner(
        settings.gateway_url,
        settings.region,
        bucket_name(request.user_id),
        credential.access_key_id,
        secret,
    )
    shown = answer["metadata"]
    parts = [
        {**part, "url": signer.url(part["key"], expires_in=seconds)} if part.get("key") else part
        for part in shown.get("parts") or []
    ]
    manifest_key = meta.get("manifest_key")
    manifest_url = signer.url(manifest_key, expires_in=seconds) if manifest_key else None
    first = next((p["url"] for p in parts if p.get("url")), None) or manifest_url
    if shown.get("parts") is not None:
        shown["parts"] = parts
    shown["manifest_url"] = manifest_url
    answer["export_url"] = first
    return answer


async def owner_resources(
    session: AsyncSession,
    master_key: bytes,
    settings: ExportSettings,
    requests: Sequence[PortabilityRequest],
    *,
    now: datetime,
) -> list[dict[str, Any]]:
    """The request resources, each with its working download links (for their owner only)."""
    credentials = await _credentials(session, requests)
    answers = []
    for request in requests:
        key = (request.meta or {}).get("link_credential")
        credential = credentials.get(str(key)) if key else None
        answers.append(_signed(request, resource(request), credential, master_key, settings, now))
    return answers


async def owner_resource(
    session: AsyncSession,
    master_key: bytes,
    settings: ExportSettings,
    request: PortabilityRequest,
    *,
    now: datetime,
) -> dict[str, Any]:
    return (await owner_resources(session, master_key, settings, [request], now=now))[0]
