"""The verifier against requests that botocore itself signs, and hand-made edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway import sigv4
from gateway.sigv4 import SigV4Error
from tests.support.signing import sign, wire

KEY_ID = "FRYABCDEFGHIJKLMNOPQ"
SECRET = "s3cr3t+/abcdefghijklmnopqrstuvwxyz012345"
TOKEN = "FRYTtoken-value_123"
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

TRICKY = [
    "plain.txt",
    "share/plus+and space/caf%/é?#.txt",
    "a//b",
    "dir/",
    "../x",
    "/abs/path",
    "q=1&r=2.txt",
    "日本語/ファイル.txt",
    "tilde~star*(paren)!'.txt",
    "k" * 1024,
]


def botocore_signed(
    url: str,
    *,
    method: str = "GET",
    token: str | None = None,
    presign: int | None = None,
    when: datetime = NOW,
    headers: dict[str, str] | None = None,
) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]]]:
    request = sign(
        url,
        access_key_id=KEY_ID,
        secret=SECRET,
        token=token,
        method=method,
        presign=presign,
        when=when,
        headers=headers,
    )
    return wire(request)


def check(
    method: str,
    raw_path: bytes,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    now: datetime = NOW,
    secret: str = SECRET,
) -> sigv4.Signed:
    pairs = sigv4.parse_query(query)
    signed = sigv4.parse(method, pairs, headers)
    assert signed is not None
    sigv4.check_time(signed, now)
    sigv4.verify(signed, secret, method=method, raw_path=raw_path, query=pairs, headers=headers)
    return signed


@pytest.mark.parametrize("key", TRICKY)
def test_header_auth_from_botocore(key: str) -> None:
    from urllib.parse import quote

    url = "http://127.0.0.1:9000/alice-data/" + quote(key, safe="/~")
    signed = check(*botocore_signed(url))
    assert signed.access_key_id == KEY_ID
    assert not signed.presigned


@pytest.mark.parametrize("key", TRICKY)
def test_presigned_from_botocore(key: str) -> None:
    from urllib.parse import quote

    url = "http://127.0.0.1:9000/alice-data/" + quote(key, safe="/~")
    signed = check(*botocore_signed(url, presign=3600, token=TOKEN))
    assert signed.presigned
    assert signed.security_token == TOKEN


def test_listing_query_and_token() -> None:
    url = (
        "http://127.0.0.1:9000/alice-data?list-type=2&prefix=share%2F&delimiter=%2F"
        "&encoding-type=url&start-after=a%2Bb%20c"
    )
    signed = check(*botocore_signed(url, token=TOKEN))
    assert signed.security_token == TOKEN


def test_wrong_secret() -> None:
    with pytest.raises(SigV4Error) as info:
        check(*botocore_signed("http://h/b/k"), secret="x" * 40)
    assert info.value.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize("tamper", ["path", "query", "header", "method"])
def test_changed_after_signing(tamper: str) -> None:
    method, path, query, headers = botocore_signed(
        "http://h/b/share/k?versionId=1", headers={"Range": "bytes=0-9"}
    )
    if tamper == "path":
        path = b"/b/other/k"
    elif tamper == "query":
        query = b"versionId=2"
    elif tamper == "header":
        headers = [(n, b"bytes=0-99") if n == b"range" else (n, v) for n, v in headers]
    else:
        method = "DELETE"
    with pytest.raises(SigV4Error) as info:
        check(method, path, query, headers)
    assert info.value.code == "SignatureDoesNotMatch"


def test_skew_of_16_minutes() -> None:
    request = botocore_signed("http://h/b/k", when=NOW - timedelta(minutes=16))
    with pytest.raises(SigV4Error) as info:
        check(*request)
    assert info.value.code == "RequestTimeTooSkewed"
    check(*botocore_signed("http://h/b/k", when=NOW - timedelta(minutes=14)))


def test_presigned_expiry() -> None:
    request = botocore_signed("http://h/b/k", presign=60, when=NOW - timedelta(seconds=61))
    with pytest.raises(SigV4Error) as info:
        check(*request)
    assert (info.value.code, info.value.message) == ("AccessDenied", "Request has expired")
    # Presigned URLs are not subject to the 15-minute skew, only to their own expiry.
    check(*botocore_signed("http://h/b/k", presign=7200, when=NOW - timedelta(hours=1)))


def test_presigned_expires_over_a_week() -> None:
    method, path, query, headers = botocore_signed("http://h/b/k", presign=3600)
    query = query.replace(b"X-Amz-Expires=3600", b"X-Amz-Expires=604801")
    with pytest.raises(SigV4Error) as info:
        check(method, path, query, headers)
    assert info.value.code == "AuthorizationQueryParametersError"


def test_anonymous_is_none() -> None:
    assert sigv4.parse("GET", [], [(b"host", b"h")]) is None


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        (
            "AWS4-HMAC-SHA256 Credential=FRYX/20261126/us-east-1/s3/aws4_request",
            "AuthorizationHeaderMalformed",
        ),
        ("AWS4-HMAC-SHA256 garbage", "AuthorizationHeaderMalformed"),
        ("AWS2 FRYX:c2ln", "AuthorizationHeaderMalformed"),
        (
            "AWS4-HMAC-SHA256 Credential=FRYX/2026/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=ab",
            "AuthorizationHeaderMalformed",
        ),
    ],
)
def test_malformed_authorization(auth: str, code: str) -> None:
    headers = [
        (b"host", b"h"),
        (b"authorization", auth.encode()),
        (b"x-amz-date", b"20261126T120000Z"),
        (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
    ]
    with pytest.raises(SigV4Error) as info:
        sigv4.parse("GET", [], headers)
    assert info.value.code == code


def test_wrong_service_is_refused() -> None:
    method, _, _, headers = botocore_signed("http://h/b/k")
    headers = [
        (n, v.replace(b"/s3/", b"/ec2/")) if n == b"authorization" else (n, v) for n, v in headers
    ]
    signed = sigv4.parse(method, [], headers)
    assert signed is not None
    with pytest.raises(SigV4Error):
        sigv4.check_time(signed, NOW)
