"""S3 XML errors: the only place the gateway turns a failure into bytes on the wire.

S3Error               an answer with an S3 error code: it carries its code, message and the
│                     HTTP status STATUS gives the code, and renders itself (`response`)
└── sigv4.SigV4Error  a signature that cannot be accepted (SigV4 or SigV2)

Anything else that reaches the gateway's edge is translated by `as_s3_error`: storage's
exceptions through STORAGE_ERRORS, the rest as InternalError.
"""

from __future__ import annotations

import secrets
from xml.sax.saxutils import escape

from starlette.responses import Response

from storage.exceptions import (
    BackendUnavailable,
    InvalidKey,
    InvalidPartNumber,
    NoSuchBucket,
    NoSuchKey,
    PartsUnknown,
    StorageError,
)

# AWS's status for each error code the gateway produces. tests/unit/test_gateway_errors.py
# renders every code raised anywhere in gateway/ and fails on one missing here.
STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "ExpiredToken": 400,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidPartNumber": 416,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "InvalidToken": 400,
    "InternalError": 500,
    "MethodNotAllowed": 405,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "SlowDown": 503,
}
# A code missing from STATUS is a bug of ours, not of the client: it is still answered, as
# the server error it is, rather than failing while the error is being rendered.
UNKNOWN_CODE_STATUS = 500

# Storage's exceptions as S3 answers, tried in order; a message of None answers with the
# exception's own text (InvalidKey says which rule the key breaks). Any other exception is
# INTERNAL_ERROR, which tells the client nothing of what failed.
STORAGE_ERRORS: tuple[tuple[type[StorageError], str, str | None], ...] = (
    (NoSuchKey, "NoSuchKey", "The specified key does not exist."),
    (NoSuchBucket, "NoSuchBucket", "The specified bucket does not exist"),
    (InvalidPartNumber, "InvalidPartNumber", "The requested partnumber is not satisfiable"),
    (PartsUnknown, "NotImplemented", "The part layout of this object was not recorded; use Range"),
    (InvalidKey, "InvalidArgument", None),
    (BackendUnavailable, "SlowDown", "The storage backend is unavailable; please retry."),
)
INTERNAL_ERROR = ("InternalError", "We encountered an internal error. Please try again.")


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


class S3Error(Exception):
    """A request the gateway answers with an S3 error document."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS.get(code, UNKNOWN_CODE_STATUS)
        self.headers = headers or {}

    def response(self, *, request_id: str, resource: str = "", head: bool = False) -> Response:
        """This error as S3 answers it. HEAD answers carry no body, as S3's do."""
        headers = {**self.headers, "x-amz-request-id": request_id}
        if head:
            return Response(status_code=self.status, headers=headers, media_type="application/xml")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(self.code)}</Code><Message>{escape(self.message)}</Message>"
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
        )
        return Response(
            body, status_code=self.status, headers=headers, media_type="application/xml"
        )


def as_s3_error(exc: BaseException) -> S3Error:
    """The S3 answer to `exc`: itself if it is one, else its translation."""
    if isinstance(exc, S3Error):
        return exc
    for kind, code, message in STORAGE_ERRORS:
        if isinstance(exc, kind):
            return S3Error(code, str(exc) if message is None else message)
    return S3Error(*INTERNAL_ERROR)
