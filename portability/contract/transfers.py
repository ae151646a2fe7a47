"""Transfers: the destination a user pushes to, from the API's body to the copy worker.

`Destination` is the one type a destination has on Ferry's side: the API, the dashboard and
the CLI parse it, `portability.transfers` seals and opens it, and the worker turns it into
the copy engine's target with `for_copy`.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from portability.accounts import AccountError
from portability.buckets import check_bucket_name
from portability.contract.base import Body, Says, refuse
from storage.egress import EgressRefused, endpoint_host
from transfer import spec

Checksum = Literal["auto", "md5", "crc32c", "sha256"]
AddressingStyle = Literal["path", "virtual"]


def null_is(default: str) -> BeforeValidator:
    """An optional text field sent as null (or, for some, empty) takes its default."""
    return BeforeValidator(lambda value: default if value is None else value)


def http_url(url: str, what: str) -> str:
    """`url` if it is an http(s) URL with a host Ferry could name; else refused, as `what`.

    Only the form: whether Ferry may connect to the address is the egress policy's, later.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise refuse(f"{what} is malformed: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise refuse(f"{what} must be an http(s):// URL")
    try:
        endpoint_host(url)
    except EgressRefused as exc:
        raise refuse(f"{what}: {exc}") from None
    return url


def _required(name: str) -> Says:
    return Says(f"destination.{name} is required (a string)")


class Destination(Body):
    """The destination of a transfer; its secrets are sealed at rest and never returned."""

    not_an_object = "destination must be an object"
    unknown_fields = "unknown destination field(s): {names}"

    endpoint_url: Annotated[
        str, _required("endpoint_url"), Field(min_length=1, json_schema_extra={"format": "uri"})
    ]
    region: Annotated[str, null_is("us-east-1"), _required("region")] = "us-east-1"
    bucket: Annotated[str, _required("bucket"), Field(min_length=3, max_length=63)]
    prefix: Annotated[str, null_is(""), _required("prefix")] = ""
    access_key_id: Annotated[str, _required("access_key_id"), Field(min_length=1)]
    secret_access_key: Annotated[SecretStr, _required("secret_access_key"), Field(min_length=1)]
    session_token: Annotated[
        SecretStr | None,
        BeforeValidator(lambda value: value or None),
        Says("destination.session_token must be a string or null"),
    ] = None
    addressing_style: Annotated[
        AddressingStyle,
        null_is("path"),
        Says("destination.addressing_style must be one of path, virtual"),
    ] = "path"
    checksum: Annotated[
        Checksum,
        null_is("auto"),
        Says(f"destination.checksum must be one of {', '.join(spec.CHECKSUMS)}"),
    ] = "auto"

    @field_validator("endpoint_url")
    @classmethod
    def _http_url(cls, endpoint: str) -> str:
        return http_url(endpoint, "destination.endpoint_url").rstrip("/")

    @field_validator("region")
    @classmethod
    def _some_region(cls, region: str) -> str:
        return region or "us-east-1"

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        try:
            return check_bucket_name(bucket)
        except AccountError as exc:
            raise refuse(f"destination.bucket: {exc}") from None

    def public(self) -> dict[str, str]:
        """What may be shown and stored in the clear: everything but the secrets."""
        return self.model_dump(exclude={"secret_access_key", "session_token"})

    def in_clear(self) -> dict[str, str | None]:
        """Every field, the secrets readable: for a connection made at once."""
        token = self.session_token
        return {
            **self.public(),
            "secret_access_key": self.secret_access_key.get_secret_value(),
            "session_token": token.get_secret_value() if token else None,
        }

    def for_copy(self) -> spec.Destination:
        """The copy engine's target, secrets included."""
        return spec.Destination(**self.in_clear())  # type: ignore[arg-type]


class TransferSource(Body):
    """`bucket` may be left out when the caller has one bucket."""

    not_an_object = "source must be an object with bucket and prefix"
    unknown_fields = not_an_object

    bucket: Annotated[str | None, Says("source.bucket must be a string")] = None
    prefix: Annotated[str, null_is(""), Says("source.prefix must be a string")] = ""


class TransferRequest(Body):
    """Push a bucket (or a prefix of it) to another provider's S3 endpoint."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_type": "transfer",
                    "source": {"bucket": "alice-data", "prefix": ""},
                    "destination": {
                        "endpoint_url": "https://s3.example.net",
                        "region": "eu-west-1",
                        "bucket": "alice-new-home",
                        "access_key_id": "AKIA…",
                        "secret_access_key": "…",
                    },
                }
            ]
        }
    )

    request_type: Annotated[
        Literal["transfer"], Says("request_type must be 'export' or 'transfer'")
    ]
    destination: Annotated[Destination, Says("destination must be an object")]
    # Any empty value stands for "the defaults", as a form may send it.
    source: Annotated[
        TransferSource,
        BeforeValidator(lambda value: value or {}),
        Says("source must be an object with bucket and prefix"),
    ] = TransferSource()
