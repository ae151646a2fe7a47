"""S3 XML errors: the only place the gateway turns a failure into bytes on the wire.

S3Error               an answer with an S3 error code; its HTTP status comes from STATUS
└── sigv4.SigV4Error  a signature that cannot be accepted (SigV4 or SigV2)
"""

from __future__ import annotations

import secrets
from xml.sax.saxutils import escape

from starlette.responses import Response

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


def status_of(code: str) -> int:
    return STATUS.get(code, UNKNOWN_CODE_STATUS)


def new_request_id() -> str:
    return secrets.token_hex(8).upper()


def error_response(
    code: str,
    message: str,
    *,
    request_id: str,
    resource: str = "",
    head: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    """An S3 error document. HEAD answers carry no body, as S3's do."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    )
    headers = {**(headers or {}), "x-amz-request-id": request_id}
    status = status_of(code)
    if head:
        return Response(status_code=status, headers=headers, media_type="application/xml")
    return Response(body, status_code=status, headers=headers, media_type="application/xml")


class S3Error(Exception):
    """A request the gateway answers with an S3 error document."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return status_of(self.code)
