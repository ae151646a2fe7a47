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

import base64
import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, PortabilityRequest, User
from db.wakeup import announce_work
from portability.exports.links import is_export_bucket
from portability.imports.handoff import source_from_handoff
from portability.requests import new_request
from storage.egress import EgressPolicy, EgressRefused, endpoint_host
from storage.s3_wire import ADDRESSING_STYLES
from sts.exceptions import InvalidRequest
from sts.sealing import seal_text, unseal_text
from transfer.spec import ON_CONFLICT

REQUEST_TYPE = "import"
PURPOSE = "import-source"
_PUBLIC = ("endpoint_url", "region", "bucket", "prefix", "access_key_id", "addressing_style")
_SEALED = ("secret_access_key", "session_token", "manifest_url")
_SOURCE_FIELDS = {*_PUBLIC, "secret_access_key", "session_token"}


def _string(body: dict[str, Any], where: str, name: str, default: str | None = None) -> str:
    value = body.get(name, default)
    if value is None and default is not None:
        value = default
    if not isinstance(value, str) or (default is None and not value):
        raise InvalidRequest(f"{where}.{name} is required (a string)")
    return value


def _http_url(value: str, what: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidRequest(f"{what} is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{what} must be an http(s):// URL")
    try:
        endpoint_host(value)  # the form; the address is the egress policy's, later
    except EgressRefused as exc:
        raise InvalidRequest(f"{what}: {exc}") from None
    return value


def parse_source(body: Any) -> dict[str, Any]:
    """The source object of an import request, checked; secrets still in the clear."""
    if not isinstance(body, dict):
        raise InvalidRequest("source must be an object (or send handoff instead)")
    unknown = set(body) - _SOURCE_FIELDS
    if unknown:
        raise InvalidRequest(f"unknown source field(s): {', '.join(sorted(unknown))}")
    endpoint = _http_url(_string(body, "source", "endpoint_url"), "source.endpoint_url")
    bucket = _string(body, "source", "bucket")
    # Other providers keep legacy names (upper case, underscores): only what breaks a path.
    if len(bucket) > 255 or "/" in bucket or not bucket.isprintable():
        raise InvalidRequest("source.bucket is not a bucket name")
    addressing = _string(body, "source", "addressing_style", "path")
    if addressing not in ADDRESSING_STYLES:
        raise InvalidRequest(
            f"source.addressing_style must be one of {', '.join(ADDRESSING_STYLES)}"
        )
    token = body.get("session_token")
    if token is not None and not isinstance(token, str):
        raise InvalidRequest("source.session_token must be a string or null")
    return {
        "endpoint_url": endpoint.rstrip("/"),
        "region": _string(body, "source", "region", "us-east-1") or "us-east-1",
        "bucket": bucket,
        "prefix": _string(body, "source", "prefix", ""),
        "access_key_id": _string(body, "source", "access_key_id"),
        "secret_access_key": _string(body, "source", "secret_access_key"),
        "session_token": token or None,
        "addressing_style": addressing,
    }


def seal_source(master_key: bytes, request_id: uuid.UUID, source: dict[str, Any]) -> str:
    sealed: dict[str, Any] = {k: source[k] for k in _PUBLIC}
    for name in _SEALED:
        value = source.get(name)
        sealed[f"{name}_sealed"] = (
            base64.b64encode(seal_text(master_key, PURPOSE, f"{request_id}/{name}", value)).decode()
            if value
            else None
        )
    return json.dumps(sealed)


def open_source(master_key: bytes, request: PortabilityRequest) -> dict[str, Any]:
    """The source with its secrets and manifest link, for the worker that reads from it."""
    stored = json.loads(request.transfer_destination or "{}")
    result = {k: stored.get(k) for k in _PUBLIC}
    for name in _SEALED:
        value = stored.get(f"{name}_sealed")
        result[name] = (
            unseal_text(master_key, PURPOSE, f"{request.id}/{name}", base64.b64decode(value))
            if value
            else None
        )
    return result


def public_source(request: PortabilityRequest) -> dict[str, Any] | None:
    """What the API shows of an import's source: never a secret, nor the manifest link."""
    if not request.transfer_destination:
        return None
    stored = json.loads(request.transfer_destination)
    return {k: stored.get(k) for k in _PUBLIC}


def _parse_body(body: Any) -> tuple[dict[str, Any], str | None, bool]:
    """(source, manifest_url, via hand-off) of an import body."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    allowed = {
        "request_type",
        "source",
        "handoff",
        "source_prefix",
        "target",
        "manifest_url",
        "on_conflict",
    }
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if ("source" in body) == ("handoff" in body):
        raise InvalidRequest("send either source or handoff (the hand-off document)")
    manifest_url = body.get("manifest_url")
    if "handoff" in body:
        prefix = body.get("source_prefix")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequest("source_prefix must be a string")
        given = source_from_handoff(body["handoff"], prefix=prefix)
        try:
            source = parse_source(given["source"])
        except InvalidRequest as exc:
            raise InvalidRequest(f"handoff: {exc}") from None
        manifest_url = manifest_url or given["manifest_url"]
    else:
        if "source_prefix" in body:
            raise InvalidRequest("source_prefix goes with handoff; put prefix in source")
        source = parse_source(body["source"])
    if manifest_url is not None:
        if not isinstance(manifest_url, str):
            raise InvalidRequest("manifest_url must be a string")
        _http_url(manifest_url, "manifest_url")
    return source, manifest_url, "handoff" in body


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
    source, manifest_url, via_handoff = _parse_body(body)
    target = body.get("target")
    if not isinstance(target, dict) or set(target) - {"bucket", "prefix"}:
        raise InvalidRequest("target must be an object with bucket and prefix")
    prefix = target.get("prefix", "") or ""
    if not isinstance(prefix, str):
        raise InvalidRequest("target.prefix must be a string")
    on_conflict = body.get("on_conflict", "skip_identical")
    if on_conflict not in ON_CONFLICT:
        raise InvalidRequest(f"on_conflict must be one of {', '.join(ON_CONFLICT)}")
    owned = [
        b
        for b in await session.scalars(select(Bucket).where(Bucket.owner_id == user.id))
        if not is_export_bucket(b)
    ]
    bucket_name = target.get("bucket")
    if bucket_name is None and len(owned) == 1:
        bucket_name = owned[0].name
    if not isinstance(bucket_name, str):
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
            "handoff": via_handoff,
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
