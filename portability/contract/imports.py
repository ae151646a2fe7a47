"""Imports: the hand-off document and the import request, as the document shows them.

`portability.imports.service.create_import_request` validates an import's body itself for
now; moving it onto `ImportRequest` (with `parse`) makes these models its only definition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AnyUrl, ConfigDict, Field

from portability.contract.base import Body

AddressingStyle = Literal["path", "virtual"]


class HandoffDocument(Body):
    """Everything another provider needs to pull one bucket: shown once, with the secret,
    when credentials (or an `s3` export) are issued. An import accepts it in place of
    `source`. `manifest_url`, when set, is a presigned link to the `ferry-manifest` (key,
    size, sha256) the import verifies every object against."""

    format: Literal["ferry-handoff"]
    version: Literal[1]
    endpoint_url: AnyUrl
    region: str
    addressing_style: AddressingStyle = "path"
    bucket: str
    prefixes: Annotated[list[str], Field(min_length=1)]
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expires_at: datetime
    manifest_url: AnyUrl | None


class ImportSource(Body):
    endpoint_url: AnyUrl
    region: str = "us-east-1"
    bucket: Annotated[str, Field(min_length=1, max_length=255)]
    prefix: str = ""
    access_key_id: Annotated[str, Field(min_length=1)]
    secret_access_key: Annotated[str, Field(min_length=1)]
    session_token: str | None = None
    addressing_style: AddressingStyle = "path"


class BucketPlace(Body):
    """`bucket` may be left out when the caller has one bucket."""

    bucket: str | None = None
    prefix: str = ""


class ImportRequest(Body):
    """Bring objects from another provider's S3 endpoint into one of the caller's buckets,
    through the copy engine (multipart, parallel, checksummed, resumable). Give `source`, or
    `handoff` (with `source_prefix` when the document covers several prefixes).
    `on_conflict` rules a key of the bucket that already holds an object: `skip_identical`
    (default) leaves an identical object and replaces a different one; `overwrite` writes
    every object afresh; `fail` leaves a different object untouched and fails its item (the
    request then fails). Every key that held a different object is in the report's
    `conflicts`, as `replaced` or `kept`. With a
    manifest (`manifest_url`, or the hand-off's), every object's sha256 is computed while it
    is read and compared; any mismatch fails the request. Secrets and the manifest link are
    sealed at rest and never returned; the source and the manifest link go through the
    egress policy."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": {
                        "endpoint_url": "https://s3.old-provider.example",
                        "bucket": "alice-photos",
                        "access_key_id": "AKIA…",
                        "secret_access_key": "…",
                    },
                    "target": {"bucket": "alice-data", "prefix": "imported/"},
                }
            ]
        }
    )

    request_type: Literal["import"] = "import"
    source: ImportSource | None = None
    handoff: HandoffDocument | None = None
    source_prefix: str | None = None
    target: BucketPlace
    manifest_url: AnyUrl | None = None
    on_conflict: Literal["skip_identical", "overwrite", "fail"] = "skip_identical"
