"""Transfer requests: validate a destination, seal its secrets, show it without them.

`transfer_destination` holds JSON: the destination's public fields plus its secret access key
and session token sealed with the master key (bound to the request id), so a database dump
cannot be used to write to the user's new provider. The secrets are never returned.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, PortabilityRequest, User
from db.wakeup import announce_work
from portability.contract.base import Refused, parse
from portability.contract.transfers import Destination, TransferRequest
from portability.requests import new_request, open_fields, seal_fields
from storage.egress import EgressPolicy
from sts.exceptions import InvalidRequest

PURPOSE = "transfer-destination"
_SECRETS = ("secret_access_key", "session_token")


def parse_destination(body: Any) -> dict[str, Any]:
    """The destination object of a transfer request, checked; secrets in the clear."""
    try:
        return parse(Destination, body).in_clear()
    except Refused as exc:
        raise InvalidRequest(str(exc)) from None


def seal_destination(master_key: bytes, request_id: uuid.UUID, destination: Destination) -> str:
    """The destination as stored: its public fields, and its secrets sealed to this request."""
    sealed: dict[str, Any] = destination.public()
    secrets = {name: getattr(destination, name) for name in _SECRETS}
    in_clear = {name: s.get_secret_value() if s else None for name, s in secrets.items()}
    sealed.update(seal_fields(master_key, PURPOSE, request_id, in_clear))
    return json.dumps(sealed)


def open_destination(master_key: bytes, request: PortabilityRequest) -> Destination:
    """The destination with its secrets, for the worker that copies to it."""
    stored = json.loads(request.transfer_destination or "{}")
    opened = {k: v for k, v in stored.items() if k in Destination.model_fields}
    opened.update(open_fields(master_key, PURPOSE, request.id, stored, _SECRETS))
    # Stored by this module after the same checks; constructed, not validated again.
    return Destination.model_construct(
        **{**opened, **{k: SecretStr(v) if v else None for k, v in opened.items() if k in _SECRETS}}
    )


def public_destination(request: PortabilityRequest) -> dict[str, Any] | None:
    """What the API shows of a destination: never a secret."""
    if not request.transfer_destination:
        return None
    stored = json.loads(request.transfer_destination)
    return {k: stored.get(k) for k in Destination.model_fields if k not in _SECRETS}


async def create_transfer_request(
    session: AsyncSession,
    master_key: bytes,
    user: User,
    body: TransferRequest | Any,
    *,
    now: datetime,
    egress: EgressPolicy,
) -> PortabilityRequest:
    """A pending transfer of one of the user's buckets (or a prefix of it) to a destination.

    The destination's address is checked against `egress` here, so a refused one is an
    answer to the user; the worker's connections are checked again when they are made.
    """
    if not isinstance(body, TransferRequest):
        try:
            body = parse(TransferRequest, body)
        except Refused as exc:
            raise InvalidRequest(str(exc)) from None
    destination = body.destination
    await egress.check_endpoint(destination.endpoint_url)
    bucket_name, prefix = body.source.bucket, body.source.prefix
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
