"""Requests signed by botocore itself, at a chosen time, for tests of the verifier."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import urlsplit

from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(
    url: str,
    *,
    access_key_id: str,
    secret: str,
    token: str | None = None,
    method: str = "GET",
    presign: int | None = None,
    when: datetime | None = None,
    headers: dict[str, str] | None = None,
    region: str = "us-east-1",
) -> AWSRequest:
    """A prepared-to-send request signed the way boto3 signs it (header or presigned query)."""
    creds = Credentials(access_key_id, secret, token)
    request = AWSRequest(method=method, url=url, headers=headers or {})
    if presign is None:
        auth: S3SigV4Auth = S3SigV4Auth(creds, "s3", region)
        # S3 requires the payload hash header; botocore's S3 client adds it before signing.
        request.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    else:
        auth = S3SigV4QueryAuth(creds, "s3", region, expires=presign)
    moment = (when or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", lambda: moment):
        auth.add_auth(request)
    return request


def wire(request: AWSRequest) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]:
    """(method, raw path, raw query, headers) as they would arrive at an ASGI app."""
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = [(b"host", parts.netloc.encode())] + [
        (k.lower().encode(), v.encode() if isinstance(v, str) else v)
        for k, v in prepared.headers.items()
    ]
    return prepared.method, parts.path.encode(), parts.query.encode(), headers


def sign_v2(
    url: str,
    *,
    access_key_id: str,
    secret: str,
    token: str | None = None,
    method: str = "GET",
    presign: int | None = None,
    headers: dict[str, str] | None = None,
) -> AWSRequest:
    """A request signed with Signature Version 2 as botocore signs it (boto3's default
    presigned URLs use the query form)."""
    creds = Credentials(access_key_id, secret, token)
    request = AWSRequest(method=method, url=url, headers=headers or {})
    auth = HmacV1Auth(creds) if presign is None else HmacV1QueryAuth(creds, expires=presign)
    auth.add_auth(request)
    return request
