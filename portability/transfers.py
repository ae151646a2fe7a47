"""Transfer requests: validate a destination, seal its secrets, show it without them.

`transfer_destination` holds JSON: the destination's public fields plus its secret access key
and session token sealed with the master key (bound to the request id), so a database dump
cannot be used to write to the user's new provider. The secrets are never returned.
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
from portability.buckets import check_bucket_name
from portability.requests import new_request
from storage.egress import EgressPolicy, EgressRefused, endpoint_host
from storage.s3_wire import ADDRESSING_STYLES
from sts.exceptions import InvalidRequest
from sts.sealing import seal_text, unseal_text
from transfer.spec import CHECKSUMS

PURPOSE = "transfer-destination"
_PUBLIC = (
    "endpoint_url",
    "region",
    "bucket",
    "prefix",
    "access_key_id",
    "addressing_style",
    "checksum",
)


def _text(body: dict[str, Any], name: str, *, required: bool = True, default: str = "") -> str:
    value = body.get(name, default)
    if value is None and not required:
        return default
    if not isinstance(value, str) or (required and not value):
        raise InvalidRequest(f"destination.{name} is required (a string)")
    return value


def parse_destination(body: Any) -> dict[str, Any]:
    """The destination object of a transfer request, checked; secrets still in the clear."""
    if not isinstance(body, dict):
        raise InvalidRequest("destination must be an object")
    unknown = set(body) - {*_PUBLIC, "secret_access_key", "session_token"}
    if unknown:
        raise InvalidRequest(f"unknown destination field(s): {', '.join(sorted(unknown))}")
    endpoint = _text(body, "endpoint_url")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise InvalidRequest(f"destination.endpoint_url is malformed: {endpoint!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("destination.endpoint_url must be an http(s):// URL")
    try:
        endpoint_host(endpoint)  # the form; the address is the egress policy's, later
    except EgressRefused as exc:
        raise InvalidRequest(f"destination.endpoint_url: {exc}") from None
    bucket = _text(body, "bucket")
    try:
        check_bucket_name(bucket)
    except Exception as exc:
        raise InvalidRequest(f"destination.bucket: {exc}") from None
    addressing = _text(body, "addressing_style", required=False, default="path")
    if addressing not in ADDRESSING_STYLES:
        raise InvalidRequest(
            f"destination.addressing_style must be one of {', '.join(ADDRESSING_STYLES)}"
        )
    checksum = _text(body, "checksum", required=False, default="auto")
    if checksum not in CHECKSUMS:
        raise InvalidRequest(f"destination.checksum must be one of {', '.join(CHECKSUMS)}")
    token = body.get("session_token")
    if token is not None and not isinstance(token, str):
        raise InvalidRequest("destination.session_token must be a string or null")
    return {
        "endpoint_url": endpoint.rstrip("/"),
        "region": _text(body, "region", required=False, default="us-east-1") or "us-east-1",
        "bucket": bucket,
        "prefix": _text(body, "prefix", required=False, default=""),
        "access_key_id": _text(body, "access_key_id"),
        "secret_access_key": _text(body, "secret_access_key"),
        "session_token": token or None,
        "addressing_style": addressing,
        "checksum": checksum,
    }


def seal_destination(master_key: bytes, request_id: uuid.UUID, destination: dict[str, Any]) -> str:
    sealed = {k: destination[k] for k in _PUBLIC}
    for name in ("secret_access_key", "session_token"):
        value = destination.get(name)
        sealed[f"{name}_sealed"] = (
            base64.b64encode(seal_text(master_key, PURPOSE, f"{request_id}/{name}", value)).decode()
            if value
            else None
        )
    return json.dumps(sealed)


def open_destination(master_key: bytes, request: PortabilityRequest) -> dict[str, Any]:
    """The destination with its secrets, for the worker that copies to it."""
    stored = json.loads(request.transfer_destination or "{}")
    result = {k: stored.get(k) for k in _PUBLIC}
    for name in ("secret_access_key", "session_token"):
        value = stored.get(f"{name}_sealed")
        result[name] = (
            unseal_text(master_key, PURPOSE, f"{request.id}/{name}", base64.b64decode(value))
            if value
            else None
        )
    return result


def public_destination(request: PortabilityRequest) -> dict[str, Any] | None:
    """What the API shows of a destination: never a secret."""
    if not request.transfer_destination:
        return None
    stored = json.loads(request.transfer_destination)
    return {k: stored.get(k) for k in _PUBLIC}


async def create_transfer_request(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    body: Any,
    *,
    now: datetime,
    egress: EgressPolicy,
) -> PortabilityRequest:
    """A pending transfer of one of the user's buckets (or a prefix of it) to a destination.

    The destination's address is checked against `egress` here, so a refused one is an
    answer to the user; the worker's connections are checked again when they are made.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = set(body) - {"request_type", "destination", "source"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    destination = parse_destination(body.get("destination"))
    await egress.check_endpoint(destination["endpoint_url"])
    source = body.get("source") or {}
    if not isinstance(source, dict) or set(source) - {"bucket", "prefix"}:
        raise InvalidRequest("source must be an object with bucket and prefix")
    bucket_name = source.get("bucket")
    prefix = source.get("prefix", "") or ""
    if not isinstance(prefix, str):
        raise InvalidRequest("source.prefix must be a string")
    owned = list(await session.scalars(select(Bucket).where(Bucket.owner_id == user.id)))
    if bucket_name is None:
        if len(owned) != 1:
            raise InvalidRequest("source.bucket is required (you have several buckets)")
        bucket_name = owned[0].name
    if not any(b.name == bucket_name for b in owned):
        raise InvalidRequest(f"no bucket {bucket_name!r} of yours")
    request = new_request(
        user.id,
        request_type="transfer",
        format=None,
        options={"source": {"bucket": bucket_name, "prefix": prefix}},
        now=now,
    )
    request.transfer_destination = seal_destination(master_key, request.id, destination)
    session.add(request)
    await session.flush()
    await announce_work(session)
    return request
