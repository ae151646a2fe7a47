"""Portability requests as the API answers them (exports, transfers and imports alike)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import Field

from portability.contract.base import Answer
from portability.contract.credentials import IssuedCredential, Time
from portability.contract.exports import Format

Status = Literal["pending", "processing", "ready", "completed", "failed", "cancelled", "expired"]


class PublicDestination(Answer):
    """A transfer's destination, never its secrets."""

    endpoint_url: str | None = None
    region: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    access_key_id: str | None = None
    addressing_style: str | None = None
    checksum: str | None = None


class PortabilityRequest(Answer):
    """An export, a transfer or an import and where it stands. An import's source (without
    its secrets) and target are in `metadata.options`."""

    id: uuid.UUID
    user_id: uuid.UUID
    request_type: Literal["export", "transfer", "import"]
    status: Status
    format: Format | None
    export_url: Annotated[
        str | None,
        Field(
            description="The first (or only) download: a presigned gateway URL, signed for "
            "the owner when they read the request and living until `expires_at` at most. "
            "Null when there is nothing to download (not ready yet, expired, cancelled, "
            "links revoked) and in every other answer."
        ),
    ]
    expires_at: Time | None
    transfer_destination: PublicDestination | None
    created_at: Time
    completed_at: Time | None
    metadata: Annotated[
        dict[str, Any],
        Field(
            description="progress, parts ({name, key, size, sha256, url}), manifest_url, "
            "report, error, due_at, options, credentials, links_revoked_at (see "
            "portability/requests.py). `parts[].url` and `manifest_url` are signed like "
            "`export_url`: working links in the owner's reads, null otherwise."
        ),
    ]


class CreatedRequest(PortabilityRequest):
    """The new request; a format `s3` export also carries its credentials with their
    secrets, in this answer only."""

    credentials: list[IssuedCredential] = Field(default_factory=list)


class RequestList(Answer):
    requests: list[PortabilityRequest]


class OverdueRequest(PortabilityRequest):
    due_at: Time
    overdue_days: Annotated[int, Field(ge=0)]
    user_email: str | None


class OverdueRequests(Answer):
    now: Time
    requests: list[OverdueRequest]
