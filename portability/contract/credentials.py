"""Pull credentials: what issuing and rotating take, and what a credential looks like."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator

from portability.contract.base import Answer, Body, Says, refuse
from portability.contract.imports import HandoffDocument
from sts.issue import (
    GRACE_DEFAULT,
    GRACE_MAX,
    RATE_MAX,
    RATE_MIN,
    TTL_LIMIT,
    TTL_MAX,
    TTL_MIN,
    IssueRequest,
)

# The ranges are enforced by `sts.issue.IssueRequest`, whose message names the configured
# maximum; the document shows them from the same constants.
Time = Annotated[datetime, Field(description="UTC, `YYYY-MM-DDTHH:MM:SSZ`")]


def _falsy_is_none(value: object) -> object:
    return value or None


class IssueCredential(Body):
    """A read-only credential on one of the caller's buckets."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"bucket": "alice-data", "prefixes": ["share/"], "ttl_seconds": 3600}]
        }
    )

    bucket: Annotated[str, Says("bucket is required"), Field(min_length=1)]
    prefixes: Annotated[
        list[str],
        Says("prefixes must be a list of strings"),
        Field(description='Key prefixes it may read; `[""]` (the default) is all.'),
    ] = Field(default_factory=lambda: [""])
    ttl_seconds: Annotated[
        int,
        Says("ttl_seconds must be an integer"),
        Field(
            json_schema_extra={"minimum": TTL_MIN, "maximum": TTL_LIMIT},
            description="At most 604800 (7 days) with a session token; a token-free key up "
            "to `[sts] max_ttl_seconds` (7 days unless the admin allows up to 365).",
        ),
    ] = 3600
    session_token: Annotated[
        bool,
        Says("session_token must be true or false"),
        Field(description="`false`: a plain key pair, for forms without a token field."),
    ] = True
    # An empty value of any kind reads as "no restriction", as it always has.
    allowed_cidrs: Annotated[
        list[str] | None,
        BeforeValidator(_falsy_is_none),
        Says("allowed_cidrs must be a list of strings"),
    ] = None
    max_bytes_per_second: Annotated[
        int | None,
        Says("max_bytes_per_second must be an integer or null"),
        Field(json_schema_extra={"minimum": RATE_MIN, "maximum": RATE_MAX}),
    ] = None
    label: Annotated[
        str | None, Says("label must be a string"), Field(json_schema_extra={"maxLength": 200})
    ] = None

    @field_validator("prefixes")
    @classmethod
    def _some_prefix(cls, prefixes: list[str]) -> list[str]:
        if not prefixes:
            # An empty list reads as "nothing", not "everything": the whole bucket is asked for.
            raise refuse('prefixes must not be empty: send [""] for the whole bucket', status=400)
        return prefixes

    def issue_request(self, *, max_ttl_seconds: int = TTL_MAX) -> IssueRequest:
        """What `sts.issue` checks and issues (the ranges are its to enforce)."""
        return IssueRequest(
            prefixes=tuple(self.prefixes),
            ttl_seconds=self.ttl_seconds,
            session_token=self.session_token,
            allowed_cidrs=tuple(self.allowed_cidrs or ()),
            max_bytes_per_second=self.max_bytes_per_second,
            label=self.label,
            max_ttl_seconds=max_ttl_seconds,
        )


class RotateCredential(Body):
    """An empty body takes the default grace."""

    not_an_object = 'the body must be {"grace_seconds": <seconds>} or empty'
    unknown_fields = not_an_object

    grace_seconds: Annotated[
        int,
        Says("grace_seconds must be an integer"),
        Field(json_schema_extra={"minimum": 0, "maximum": GRACE_MAX}),
    ] = GRACE_DEFAULT


class Pulled(Answer):
    bytes: int
    objects: int
    requests: int


class Credential(Answer):
    """A pull credential, without its secret."""

    access_key_id: str
    user_id: uuid.UUID
    bucket: str
    prefixes: list[str]
    permission: Literal["read-only"]
    label: str | None = None
    kind: Annotated[
        Literal["user", "session"],
        Field(description="`session`: minted through STS by `parent_access_key_id`."),
    ] = "user"
    parent_access_key_id: str | None = None
    status: Literal["active", "expired", "revoked"]
    session_token_required: bool
    allowed_cidrs: list[str] = Field(default_factory=list)
    max_bytes_per_second: int | None = None
    endpoint_url: str
    region: str
    created_at: Time
    expires_at: Time
    revoked_at: Time | None = None
    last_used_at: Time | None = None
    pulled: Pulled


class RotatedCredential(Credential):
    secret_access_key: Annotated[str, Field(description="Shown once.")]
    previous_secret_valid_until: Annotated[
        datetime, Field(description="The old secret is refused from then on.")
    ]


class Snippets(Answer):
    """Ready-to-paste shell for each client."""

    model_config = ConfigDict(extra="allow")

    aws_cli: str
    rclone: str
    s5cmd: str
    env: str


class IssuedCredential(Credential):
    """A new credential with its secret: shown in this answer only."""

    secret_access_key: str
    session_token: str | None
    handoff: HandoffDocument
    snippets: Snippets


class CredentialList(Answer):
    credentials: list[Credential]


class RevokedAll(Answer):
    user_id: uuid.UUID
    revoked: Annotated[int, Field(ge=0)]


class SignedOut(Answer):
    user_id: uuid.UUID
    ended_sessions: Annotated[int, Field(ge=0)]
