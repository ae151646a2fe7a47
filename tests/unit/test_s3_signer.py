"""storage.s3_wire.Signer signs exactly as botocore's S3SigV4Auth does, for the same inputs."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.s3_wire import Endpoint, Signer, build_url, encode_query, quote_key

NOW = datetime(2026, 11, 27, 5, 6, 7, tzinfo=UTC)

keys = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
query_names = st.sampled_from(["prefix", "delimiter", "uploadId", "partNumber", "list-type", "a"])
queries = st.lists(st.tuples(query_names, st.none() | st.text(max_size=12)), max_size=4)
# Runs of spaces too: SigV4 signs a value trimmed, with inner runs of whitespace as one space.
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20) | st.text(
    " a", max_size=8
)
headers = st.dictionaries(
    st.sampled_from(["Content-MD5", "x-amz-meta-note", "Content-Type", "Range", "X-Amz-Meta-B"]),
    header_values,
    max_size=4,
)


def botocore_headers(
    method: str,
    url: str,
    sent: dict[str, str],
    body: bytes | None,
    token: str | None,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method=method, url=url, headers=dict(sent), data=body or b"")
    request.context["client_config"] = Config(s3={"payload_signing_enabled": body is not None})
    auth = S3SigV4Auth(
        Credentials("AKIDEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", token), "s3", "eu-west-3"
    )
    auth.add_auth(request)
    return {name: str(value) for name, value in request.headers.items()}


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "PUT", "POST", "HEAD", "DELETE"]),
    key=keys,
    query=queries,
    extra=headers,
    body=st.none() | st.binary(max_size=64),
    token=st.none() | st.just("FQoGZXIvYXdzEJr//token+="),
    style=st.sampled_from(["path", "virtual"]),
)
def test_signature_equals_botocores(
    method: str,
    key: str,
    query: list[tuple[str, str | None]],
    extra: dict[str, str],
    body: bytes | None,
    token: str | None,
    style: str,
) -> None:
    endpoint = Endpoint.parse("http://127.0.0.1:8333")
    url, host = build_url(endpoint, style, "bucket-1", key, encode_query(query))
    sent = {"Host": host, "Accept-Encoding": "identity", **extra}
    ours = Signer("AKIDEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", token, "eu-west-3").sign(
        method, url, sent, body, now=NOW
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        theirs = botocore_headers(method, url, sent, body, token, monkeypatch)
    assert ours == theirs


def test_signing_key_follows_the_date() -> None:
    signer = Signer("AKIDEXAMPLE", "secret", None, "us-east-1")
    url = "http://127.0.0.1:8333/b/k"
    today = signer.sign("GET", url, {"Host": "127.0.0.1:8333"}, None, now=NOW)
    tomorrow = signer.sign("GET", url, {"Host": "127.0.0.1:8333"}, None, now=NOW.replace(day=28))
    assert "20261127/us-east-1/s3/aws4_request" in today["Authorization"]
    assert "20261128/us-east-1/s3/aws4_request" in tomorrow["Authorization"]
    again = Signer("AKIDEXAMPLE", "secret", None, "us-east-1").sign(
        "GET", url, {"Host": "127.0.0.1:8333"}, None, now=NOW.replace(day=28)
    )
    assert tomorrow == again


def test_host_comes_from_the_url_when_not_given() -> None:
    signer = Signer("AKIDEXAMPLE", "secret", None, "us-east-1")
    sent = signer.sign("GET", "http://example.com:9000/b/k?uploads", {}, b"", now=NOW)
    assert sent["Host"] == "example.com:9000"
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date" in sent["Authorization"]


def test_without_a_time_it_signs_the_current_second(monkeypatch: pytest.MonkeyPatch) -> None:
    # The signer writes X-Amz-Date once a second; each second's requests still carry it.
    signer = Signer("AKIDEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", None, "eu-west-3")
    url = "http://127.0.0.1:8333/b/k"
    for _ in range(3):
        before = datetime.now(UTC).replace(microsecond=0)
        sent = signer.sign("GET", url, {"Host": "127.0.0.1:8333"}, b"")
        after = datetime.now(UTC)
        stamped = datetime.strptime(sent["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert before <= stamped <= after
        same = signer.sign("GET", url, {"Host": "127.0.0.1:8333"}, b"", now=stamped)
        assert sent == same
        time.sleep(0.6)


@settings(max_examples=200, deadline=None)
@given(
    key=keys,
    expires=st.integers(1, 7 * 24 * 3600),
    token=st.none() | st.just("FQoGZXIvYXdzEJr//token+="),
    port=st.sampled_from(["", ":8333"]),
)
def test_presigned_url_equals_botocores(
    key: str, expires: int, token: str | None, port: str
) -> None:
    url = f"https://gw.example{port}/ferry-export-1/{quote_key(key)}"
    ours = Signer("AKIDEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", token, "eu-west-3").presign(
        "GET", url, expires_in=expires, now=NOW
    )
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW.replace(tzinfo=None))
        request = AWSRequest(method="GET", url=url)
        creds = Credentials("AKIDEXAMPLE", "wJalr/K7MDENG+bPxRfiCY", token)
        S3SigV4QueryAuth(creds, "s3", "eu-west-3", expires=expires).add_auth(request)
    theirs = str(request.url)
    # The same URL up to the order of the query's parameters, the same signature.
    assert ours.partition("?")[0] == theirs.partition("?")[0]
    assert sorted(ours.partition("?")[2].split("&")) == sorted(theirs.partition("?")[2].split("&"))


def test_a_presigned_url_lives_at_most_a_week() -> None:
    signer = Signer("AKIDEXAMPLE", "secret", None, "us-east-1")
    with pytest.raises(ValueError, match="a week"):
        signer.presign("GET", "https://gw.example/b/k", expires_in=7 * 24 * 3600 + 1)
