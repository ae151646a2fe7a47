"""S3 XML errors: the only place the gateway turns a failure into bytes on the wire."""

from __future__ import annotations

import secrets
from xml.sax.saxutils import escape

from starlette.responses import Response

# AWS's status for each error code the gateway produces.
STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "ExpiredToken": 400,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
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
    if head:
        return Response(status_code=STATUS[code], headers=headers, media_type="application/xml")
    return Response(body, status_code=STATUS[code], headers=headers, media_type="application/xml")


class S3Error(Exception):
    """A request the gateway answers with an S3 error document."""

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
