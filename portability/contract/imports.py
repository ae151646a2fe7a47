"""Imports: the hand-off document and the import request, the one definition of both.

`portability.imports.service.create_import_request` parses its body with `ImportRequest`;
`portability.imports.handoff.source_from_handoff` a hand-off with `HandoffDocument`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from portability.contract.base import Body, Says, refuse
from portability.contract.transfers import http_url, null_is
from transfer.spec import ON_CONFLICT

AddressingStyle = Literal["path", "virtual"]
URL = {"format": "uri"}


class HandoffDocument(Body):
    """Everything another provider needs to pull one bucket: shown once, with the secret,
    when credentials (or an `s3` export) are issued. An import accepts it in place of
    `source`. `manifest_url`, when set, is a presigned link to the `ferry-manifest` (key,
    size, sha256) the import verifies every object against."""

    not_an_object = "handoff must be a JSON object (the hand-off document)"
    unknown_fields = "unknown handoff field(s): {names}"

    format: Annotated[
        Literal["ferry-handoff"], Says("handoff is not a ferry-handoff document (version 1)")
    ]
    version: Annotated[Literal[1], Says("handoff is not a ferry-handoff document (version 1)")]
    endpoint_url: Annotated[
        str, Says("handoff.endpoint_url must be a string"), Field(json_schema_extra=URL)
    ]
    region: Annotated[str, Says("handoff.region must be a string")]
    addressing_style: Annotated[
        AddressingStyle, Says("handoff.addressing_style must be one of path, virtual")
    ] = "path"
    bucket: Annotated[str, Says("handoff.bucket must be a string")]
    prefixes: Annotated[
        list[str],
        Says("handoff.prefixes must be a non-empty list of strings"),
        Field(min_length=1),
    ]
    access_key_id: Annotated[str, Says("handoff.access_key_id must be a string")]
    secret_access_key: Annotated[str, Says("handoff.secret_access_key must be a string")]
    session_token: Annotated[str | None, Says("handoff.session_token must be a string or null")]
    expires_at: Annotated[
        str,
        Says("handoff.expires_at must be a string (ISO 8601)"),
        Field(json_schema_extra={"format": "date-time"}),
    ]
    manifest_url: Annotated[
        str | None,
        Says("handoff.manifest_url must be a string or null"),
        Field(json_schema_extra=URL),
    ]


def _source_says(name: str) -> Says:
    return Says(f"source.{name} is required (a string)")


class ImportSource(Body):
    """The old provider's bucket (and prefix) and the temporary keys to read it."""

    not_an_object = "source must be an object (or send handoff instead)"
    unknown_fields = "unknown source field(s): {names}"

    endpoint_url: Annotated[
        str, _source_says("endpoint_url"), Field(min_length=1, json_schema_extra=URL)
    ]
    region: Annotated[str, null_is("us-east-1"), _source_says("region")] = "us-east-1"
    bucket: Annotated[str, _source_says("bucket"), Field(min_length=1, max_length=255)]
    prefix: Annotated[str, null_is(""), _source_says("prefix")] = ""
    access_key_id: Annotated[str, _source_says("access_key_id"), Field(min_length=1)]
    secret_access_key: Annotated[str, _source_says("secret_access_key"), Field(min_length=1)]
    session_token: Annotated[
        str | None,
        BeforeValidator(lambda value: value or None),
        Says("source.session_token must be a string or null"),
    ] = None
    addressing_style: Annotated[
        AddressingStyle,
        null_is("path"),
        Says("source.addressing_style must be one of path, virtual"),
    ] = "path"

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, endpoint: str) -> str:
        return http_url(endpoint, "source.endpoint_url").rstrip("/")

    @field_validator("region")
    @classmethod
    def _some_region(cls, region: str) -> str:
        return region or "us-east-1"

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        # Other providers keep legacy names (upper case, underscores): only what breaks a path.
        if "/" in bucket or not bucket.isprintable():
            raise refuse("source.bucket is not a bucket name")
        return bucket


class BucketPlace(Body):
    """`bucket` may be left out when the caller has one bucket."""

    not_an_object = "target must be an object with bucket and prefix"
    unknown_fields = not_an_object

    bucket: Annotated[str | None, Says("target.bucket must be a string")] = None
    prefix: Annotated[str, null_is(""), Says("target.prefix must be a string")] = ""


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

    request_type: Annotated[Literal["import"], Says("request_type must be 'import' here")] = (
        "import"
    )
    source: Annotated[ImportSource | None, Says("source must be an object")] = None
    handoff: Annotated[HandoffDocument | None, Says("handoff must be a JSON object")] = None
    source_prefix: Annotated[str | None, Says("source_prefix must be a string")] = None
    target: Annotated[BucketPlace, Says("target must be an object with bucket and prefix")]
    manifest_url: Annotated[
        str | None, Says("manifest_url must be a string"), Field(json_schema_extra=URL)
    ] = None
    on_conflict: Annotated[
        Literal["skip_identical", "overwrite", "fail"],
        Says(f"on_conflict must be one of {', '.join(ON_CONFLICT)}"),
    ] = "skip_identical"

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, body: Any) -> Any:
        if isinstance(body, dict):
            # null stands for absent, as the document allows it for both
            if (body.get("source") is None) == (body.get("handoff") is None):
                raise refuse("send either source or handoff (the hand-off document)")
            if body.get("source_prefix") is not None and body.get("source") is not None:
                raise refuse("source_prefix goes with handoff; put prefix in source")
        return body

    @field_validator("manifest_url")
    @classmethod
    def _manifest_http_url(cls, url: str | None) -> str | None:
        return None if url is None else http_url(url, "manifest_url")
