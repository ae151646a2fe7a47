"""The SigV2 verifier against requests botocore signs (HmacV1Auth, HmacV1QueryAuth), and
hand-made edge cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from gateway import sigv2
from gateway.sigv4 import SigV4Error, parse_query
from tests.support.signing import sign_v2, wire

KEY_ID = "FRYABCDEFGHIJKLMNOPQ"
SECRET = "s3cr3t+/abcdefghijklmnopqrstuvwxyz012345"
TOKEN = "FRYTtoken-value_123"

KEYS = [
    "plain.txt",
    "share/plus+and space/caf%/é?#.txt",
    "a//b",
    "dir/",
    "日本語/ファイル.txt",
    "tilde~star*(paren)!'.txt",
]


def check(
    url: str,
    *,
    token: str | None = None,
    presign: int | None = None,
    headers: dict[str, str] | None = None,
    secret: str = SECRET,
    bucket_prefix: str = "",
    now: datetime | None = None,
) -> sigv2.SignedV2:
    request = sign_v2(
        url, access_key_id=KEY_ID, secret=SECRET, token=token, presign=presign, headers=headers
    )
    method, raw_path, query, sent = wire(request)
    if presign is not None:  # a presigned URL travels without botocore's headers
        sent = [(n, v) for n, v in sent if n == b"host"]
    params = dict(parse_query(query))
    signed = sigv2.parse(params, sent)
    sigv2.check_time(signed, now or datetime.now(UTC))
    sigv2.verify(
        signed,
        secret,
        method=method,
        raw_path=raw_path,
        query_string=query,
        headers=sent,
        bucket_prefix=bucket_prefix,
    )
    return signed


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("presign", [None, 900])
@pytest.mark.parametrize("token", [None, TOKEN])
def test_botocore_signed_requests_verify(key: str, presign: int | None, token: str | None) -> None:
    signed = check(f"http://h/bucket/{quote(key)}", presign=presign, token=token)
    assert signed.access_key_id == KEY_ID
    assert signed.security_token == token
    assert signed.presigned == (presign is not None)


@pytest.mark.parametrize(
    "query",
    [
        "partNumber=2",
        "location",
        "response-content-disposition=attachment%3B%20filename%3D%22a%20b%22",
        "prefix=a%2Fb&delimiter=%2F&max-keys=5",  # not sub-resources: unsigned in the resource
        "list-type=2&encoding-type=url",
        "versionId=x&acl",
    ],
)
def test_sub_resources(query: str) -> None:
    check(f"http://h/bucket/key?{query}")
    check(f"http://h/bucket/key?{query}", presign=60, token=TOKEN)


def test_virtual_host_signs_the_bucket() -> None:
    # botocore signs the bucket in the resource when the request names it in the Host.
    request = sign_v2("http://h/bucket/k", access_key_id=KEY_ID, secret=SECRET)
    method, raw_path, query, headers = wire(request)
    signed = sigv2.parse({}, headers)
    vhost = raw_path.removeprefix(b"/bucket")
    sigv2.verify(
        signed,
        SECRET,
        method=method,
        raw_path=vhost,
        query_string=query,
        headers=headers,
        bucket_prefix="/bucket",
    )


def test_wrong_secret_and_tampering() -> None:
    with pytest.raises(SigV4Error) as info:
        check("http://h/bucket/k", secret="x" * 40)
    assert info.value.code == "SignatureDoesNotMatch"
    request = sign_v2("http://h/bucket/k?partNumber=1", access_key_id=KEY_ID, secret=SECRET)
    method, raw_path, _query, headers = wire(request)
    signed = sigv2.parse({}, headers)
    with pytest.raises(SigV4Error):
        sigv2.verify(
            signed,
            SECRET,
            method=method,
            raw_path=raw_path,
            query_string=b"partNumber=2",
            headers=headers,
        )


def test_expiry_and_skew() -> None:
    with pytest.raises(SigV4Error) as info:
        check("http://h/b/k", presign=60, now=datetime.now(UTC) + timedelta(seconds=120))
    assert info.value.code == "AccessDenied"
    with pytest.raises(SigV4Error) as info:
        check("http://h/b/k", now=datetime.now(UTC) + timedelta(minutes=16))
    assert info.value.code == "RequestTimeTooSkewed"


@pytest.mark.parametrize(
    ("params", "headers", "code"),
    [
        ({"AWSAccessKeyId": "FRYX", "Signature": "x"}, [], "AccessDenied"),
        ({"AWSAccessKeyId": "FRYX", "Signature": "x", "Expires": "²"}, [], "AccessDenied"),
        ({"AWSAccessKeyId": "FRYX", "Signature": "x", "Expires": "9" * 30}, [], "AccessDenied"),
        ({}, [(b"authorization", b"AWS nocolon"), (b"date", b"x")], "InvalidArgument"),
        ({}, [(b"authorization", b"AWS FRYX:sig")], "AccessDenied"),
        ({}, [(b"authorization", b"AWS FRYX:sig"), (b"date", b"not a date")], "AccessDenied"),
    ],
)
def test_malformed(params: dict[str, str], headers: list[tuple[bytes, bytes]], code: str) -> None:
    with pytest.raises(SigV4Error) as info:
        sigv2.parse(params, headers)
    assert info.value.code == code


def test_a_non_ascii_signature_is_just_wrong() -> None:
    signed = sigv2.SignedV2(KEY_ID, "sïgnatüre\udcff", False, "d", datetime.now(UTC), None)
    with pytest.raises(SigV4Error) as info:
        sigv2.verify(signed, SECRET, method="GET", raw_path=b"/b/k", query_string=b"", headers=[])
    assert info.value.code == "SignatureDoesNotMatch"
