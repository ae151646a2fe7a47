"""The API's models: what each body accepts, and the one sentence a person reads when not."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from portability.contract.base import Body, Refused, Says, parse
from portability.contract.credentials import IssueCredential, RotateCredential
from portability.contract.document import models_of
from portability.contract.exports import ExportRequest
from portability.contract.imports import ImportRequest
from portability.contract.transfers import Destination, TransferRequest
from portability.contract.webhooks import NewWebhook
from portability.exports.service import export_options
from portability.openapi import DOCUMENT, OPERATIONS

DESTINATION = {
    "endpoint_url": "https://s3.example.net/",
    "bucket": "new-home",
    "access_key_id": "AKID",
    "secret_access_key": "wJalrXUtnFEMI",
}


@pytest.mark.parametrize(
    ("model", "body", "status", "message"),
    [
        (IssueCredential, [], 422, "the body must be a JSON object"),
        (
            IssueCredential,
            {"bucket": "b", "zeta": 1, "alpha": 2},
            422,
            "unknown field(s): alpha, zeta",
        ),
        (IssueCredential, {}, 422, "bucket is required"),
        (IssueCredential, {"bucket": ""}, 422, "bucket is required"),
        (
            IssueCredential,
            {"bucket": "b", "prefixes": "x"},
            422,
            "prefixes must be a list of strings",
        ),
        (
            IssueCredential,
            {"bucket": "b", "prefixes": []},
            400,
            'prefixes must not be empty: send [""] for the whole bucket',
        ),
        (
            IssueCredential,
            {"bucket": "b", "ttl_seconds": "3600"},
            422,
            "ttl_seconds must be an integer",
        ),
        (
            IssueCredential,
            {"bucket": "b", "ttl_seconds": True},
            422,
            "ttl_seconds must be an integer",
        ),
        (
            IssueCredential,
            {"bucket": "b", "ttl_seconds": 3600.0},
            422,
            "ttl_seconds must be an integer",
        ),
        (
            IssueCredential,
            {"bucket": "b", "session_token": 1},
            422,
            "session_token must be true or false",
        ),
        (
            IssueCredential,
            {"bucket": "b", "max_bytes_per_second": "1"},
            422,
            "max_bytes_per_second must be an integer or null",
        ),
        (RotateCredential, {"grace_seconds": None}, 422, "grace_seconds must be an integer"),
        (
            RotateCredential,
            {"grace": 1},
            422,
            'the body must be {"grace_seconds": <seconds>} or empty',
        ),
        (ExportRequest, {"format": "pdf"}, 422, "format must be one of json, archive, s3"),
        (
            ExportRequest,
            {"format": "json", "include": ["files"]},
            422,
            "archive_format and include apply to format 'archive' only",
        ),
        (
            ExportRequest,
            {"format": "archive", "include": []},
            422,
            "include must be a non-empty list of 'personal' and 'files'",
        ),
        (
            ExportRequest,
            {"format": "json", "session_token": False},
            422,
            "session_token (true or false) applies to format 's3' only",
        ),
        (TransferRequest, {"request_type": "transfer"}, 422, "destination must be an object"),
        (
            TransferRequest,
            {"request_type": "transfer", "destination": 3},
            422,
            "destination must be an object",
        ),
        (
            TransferRequest,
            {
                "request_type": "transfer",
                "destination": DESTINATION,
                "source": {"bucket": "b", "x": 1},
            },
            422,
            "source must be an object with bucket and prefix",
        ),
        (
            TransferRequest,
            {"request_type": "transfer", "destination": DESTINATION, "source": {"prefix": 7}},
            422,
            "source.prefix must be a string",
        ),
        (
            TransferRequest,
            {"request_type": "transfer", "destination": {**DESTINATION, "sneaky": 1}},
            422,
            "unknown destination field(s): sneaky",
        ),
        (
            Destination,
            {**DESTINATION, "endpoint_url": 5},
            422,
            "destination.endpoint_url is required (a string)",
        ),
        (
            Destination,
            {**DESTINATION, "endpoint_url": "ftp://x"},
            422,
            "destination.endpoint_url must be an http(s):// URL",
        ),
        (
            Destination,
            {**DESTINATION, "endpoint_url": "https://u:p@h"},
            422,
            "destination.endpoint_url: the endpoint URL must not carry a user name or password",
        ),
        (
            Destination,
            {**DESTINATION, "bucket": "Bad_Bucket"},
            422,
            "destination.bucket: invalid bucket name 'Bad_Bucket': "
            "3-63 lower-case letters, digits, '-' or '.'",
        ),
        (
            Destination,
            {**DESTINATION, "checksum": "crc64"},
            422,
            "destination.checksum must be one of auto, md5, crc32c, sha256",
        ),
        (
            Destination,
            {**DESTINATION, "session_token": 5},
            422,
            "destination.session_token must be a string or null",
        ),
        (NewWebhook, {"url": 5}, 422, "url is required: an http(s) URL of at most 2048 characters"),
        (
            NewWebhook,
            {"url": "https://h", "events": ["request.eaten"]},
            422,
            "events must be a non-empty list of request.ready, request.completed, "
            "request.failed, request.expired, request.cancelled, credential.revoked, "
            "credential.expired",
        ),
    ],
)
def test_a_refused_body_is_one_sentence(
    model: type[Body], body: Any, status: int, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        parse(model, body)
    assert (refused.value.status, str(refused.value)) == (status, message)


def test_defaults_and_empty_values_read_as_they_always_have() -> None:
    issued = parse(IssueCredential, {"bucket": "b", "allowed_cidrs": None}).issue_request()
    assert issued.prefixes == ("",) and issued.ttl_seconds == 3600 and issued.session_token
    assert issued.allowed_cidrs == ()
    destination = parse(Destination, {**DESTINATION, "region": "", "session_token": ""})
    assert destination.endpoint_url == "https://s3.example.net"
    assert (destination.region, destination.session_token) == ("us-east-1", None)
    assert (destination.addressing_style, destination.checksum) == ("path", "auto")
    transfer = parse(TransferRequest, {"request_type": "transfer", "destination": DESTINATION})
    assert (transfer.source.bucket, transfer.source.prefix) == (None, "")
    options = export_options(parse(ExportRequest, {"format": "archive", "include": ["files"]}))
    assert (options.archive_format, options.include) == ("zip", ("files",))


def test_secrets_never_print() -> None:
    destination = parse(Destination, {**DESTINATION, "session_token": "tok-123"})
    shown = repr(destination) + str(destination.public()) + repr(destination.for_copy())
    assert "wJalrXUtnFEMI" not in shown and "tok-123" not in shown
    assert destination.in_clear()["secret_access_key"] == "wJalrXUtnFEMI"


def test_every_field_a_body_takes_says_what_is_wrong_with_it() -> None:
    """A new body field without its sentence would answer with pydantic's text."""
    bodies = {m for m in models_of(OPERATIONS) if issubclass(m, Body)}
    validated = {IssueCredential, RotateCredential, ExportRequest, TransferRequest, ImportRequest}
    assert validated <= bodies
    for model in _with_nested(bodies):
        for name, field in model.model_fields.items():
            assert any(isinstance(m, Says) for m in field.metadata), f"{model.__name__}.{name}"


def test_the_document_names_every_model_by_its_class() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for model in models_of(OPERATIONS):
        assert model.__name__ in schemas
    assert not any("-Input" in name or "-Output" in name for name in schemas)
    assert not any("title" in p for s in schemas.values() for p in s.get("properties", {}).values())


def _with_nested(models: set[type[BaseModel]]) -> set[type[BaseModel]]:
    found = set(models)
    for model in models:
        for field in model.model_fields.values():
            if isinstance(field.annotation, type) and issubclass(field.annotation, Body):
                found.add(field.annotation)
    return found
