"""Import requests: a user brings objects from another provider into one of their buckets.

The source (an S3 endpoint with temporary credentials, typed in or given as a hand-off
document) is checked against the egress policy here, so a refused address is an answer to
the user, and again by the worker when it connects. Its secret key, session token and the
manifest link (a bearer URL) are sealed with the master key, bound to the request id, in
`transfer_destination` (the far end of a transfer or an import); they are never returned.

`on_conflict` says what happens to an object that already exists in the target bucket:

- `skip_identical` (default): the same bytes are left alone, different ones are replaced;
- `overwrite`: every object is written, identical or not;
- `fail`: an existing object that differs is not touched and fails its item.

Every existing object that differed is listed in the report, whatever the rule.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, PortabilityRequest, User
from db.wakeup import announce_work
from portability.contract.base import Refused, parse
from portability.contract.imports import ImportRequest, ImportSource
from portability.exports.links import is_export_bucket
from portability.imports.handoff import source_from_handoff
from portability.requests import new_request, open_fields, seal_fields
from storage.egress import EgressPolicy
from sts.exceptions import InvalidRequest

REQUEST_TYPE = "import"
PURPOSE = "import-source"
_PUBLIC = ("endpoint_url", "region", "bucket", "prefix", "access_key_id", "addressing_style")
_SEALED = ("secret_access_key", "session_token", "manifest_url")


def parse_source(body: Any) -> dict[str, Any]:
    """The source object of an import request, checked; secrets still in the clear."""
    if not isinstance(body, ImportSource):
        try:
            body = parse(ImportSource, body)
        except Refused as exc:
            raise InvalidRequest(str(exc)) from None
    source: dict[str, Any] = body.model_dump()
    return source


def seal_source(master_key: bytes, request_id: uuid.UUID, source: dict[str, Any]) -> str:
    sealed: dict[str, Any] = {k: source[k] for k in _PUBLIC}
    sealed.update(seal_fields(master_key, PURPOSE, request_id, {k: source.get(k) for k in _SEALED}))
    return json.dumps(sealed)


def open_source(master_key: bytes, request: PortabilityRequest) -> dict[str, Any]:
    """The source with its secrets and manifest link, for the worker that reads from it."""
    stored = json.loads(request.transfer_destination or "{}")
    result: dict[str, Any] = {k: stored.get(k) for k in _PUBLIC}
    result.update(open_fields(master_key, PURPOSE, request.id, stored, _SEALED))
    return result


def public_source(request: PortabilityRequest) -> dict[str, Any] | None:
    """What the API shows of an import's source: never a secret, nor the manifest link."""
    if not request.transfer_destination:
        return None
    stored = json.loads(request.transfer_destination)
    return {k: stored.get(k) for k in _PUBLIC}


def _source(body: ImportRequest) -> tuple[dict[str, Any], str | None]:
    """(source, manifest_url) of an import: given, or what its hand-off stands for."""
    if body.source is not None:
        return parse_source(body.source), body.manifest_url
    assert body.handoff is not None  # the model holds one or the other
    given = source_from_handoff(body.handoff, prefix=body.source_prefix)
    try:
        source = parse_source(given["source"])
    except InvalidRequest as exc:
        raise InvalidRequest(f"handoff: {exc}") from None
    return source, body.manifest_url or given["manifest_url"]


async def create_import_request(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    body: Any,
    *,
    now: datetime,
    egress: EgressPolicy,
) -> PortabilityRequest:
    """A pending import into one of the user's buckets (see the module docstring)."""
    if not isinstance(body, ImportRequest):
        try:
            body = parse(ImportRequest, body)
        except Refused as exc:
            raise InvalidRequest(str(exc)) from None
    source, manifest_url = _source(body)
    prefix, on_conflict = body.target.prefix, body.on_conflict
    owned = [
        b
        for b in await session.scalars(select(Bucket).where(Bucket.owner_id == user.id))
        if not is_export_bucket(b)
    ]
    bucket_name = body.target.bucket
    if bucket_name is None and len(owned) == 1:
        bucket_name = owned[0].name
    if bucket_name is None:
        raise InvalidRequest("target.bucket is required (you have several buckets)")
    if not any(b.name == bucket_name for b in owned):
        raise InvalidRequest(f"no bucket {bucket_name!r} of yours")
    await egress.check_endpoint(source["endpoint_url"])
    if manifest_url is not None:
        await egress.check_endpoint(manifest_url)
    request = new_request(
        user.id,
        request_type=REQUEST_TYPE,
        format=None,
        options={
            "source": {k: source[k] for k in _PUBLIC},
            "target": {"bucket": bucket_name, "prefix": prefix},
            "on_conflict": on_conflict,
            "manifest": manifest_url is not None,
            "handoff": body.handoff is not None,
        },
        now=now,
    )
    request.transfer_destination = seal_source(
        master_key, request.id, {**source, "manifest_url": manifest_url}
    )
    session.add(request)
    await session.flush()
    await announce_work(session)
    return request
