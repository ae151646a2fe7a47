"""Small parts of the gateway with exact inputs: routing, ranges, conditionals, throttle, XFF."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from gateway.app import GatewayApp, GatewaySettings
from gateway.objects import check_conditions, parse_range
from gateway.routing import classify
from storage.base import ObjectInfo
from storage.throttle import TokenBucket

INFO = ObjectInfo(
    key="k", size=10, etag="abc", last_modified=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
)


@pytest.mark.parametrize(
    ("method", "path", "query", "host", "domain", "expected"),
    [
        ("GET", b"/", {}, "h", "", (None, None, "ListBuckets", False)),
        ("GET", b"/b", {"list-type": "2"}, "h", "", ("b", None, "ListObjectsV2", False)),
        ("GET", b"/b/", {}, "h", "", ("b", None, "ListObjects", False)),
        ("HEAD", b"/b", {}, "h", "", ("b", None, "HeadBucket", False)),
        ("GET", b"/b", {"location": ""}, "h", "", ("b", None, "GetBucketLocation", False)),
        ("GET", b"/b/a%2F%2Fb", {}, "h", "", ("b", "a//b", "GetObject", False)),
        ("GET", b"/b//abs", {}, "h", "", ("b", "/abs", "GetObject", False)),
        ("GET", b"/b/k", {"acl": ""}, "h", "", ("b", "k", "Object:acl", False)),
        ("PUT", b"/b/k", {}, "h", "", ("b", "k", "PutObject", True)),
        ("POST", b"/b/k", {"uploads": ""}, "h", "", ("b", "k", "MultipartUpload", True)),
        (
            "GET",
            b"/k/x",
            {},
            "b.s3.example.test:9000",
            "s3.example.test",
            ("b", "k/x", "GetObject", False),
        ),
        (
            "GET",
            b"/",
            {},
            "b.s3.example.test",
            "s3.example.test",
            ("b", None, "ListObjects", False),
        ),
        ("GET", b"/b", {"list-type": "1"}, "h", "", ("b", None, "InvalidListType", False)),
        ("HEAD", b"/", {}, "h", "", (None, None, "MethodNotAllowed", False)),
    ],
)
def test_classify(
    method: str,
    path: bytes,
    query: dict[str, str],
    host: str,
    domain: str,
    expected: tuple[object, ...],
) -> None:
    target = classify(method, path, query, {"host": host}, domain)
    assert (target.bucket, target.key, target.operation, target.write) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, None)),
        ("bytes=-3", (None, 3)),
        ("bytes=9-0", None),  # malformed: served whole, as S3 does
        ("bytes=0-1,4-5", None),  # multi-range: served whole
        ("items=0-1", None),
    ],
)
def test_parse_range(header: str | None, expected: object) -> None:
    assert parse_range(header) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"if-match": '"abc"'}, None),
        ({"if-match": '"xyz"'}, 412),
        ({"if-none-match": '"abc"'}, 304),
        ({"if-none-match": "*"}, 304),
        ({"if-modified-since": "Fri, 02 Jan 2026 03:04:05 GMT"}, 304),
        ({"if-modified-since": "Fri, 02 Jan 2026 03:04:04 GMT"}, None),
        ({"if-unmodified-since": "Fri, 02 Jan 2026 03:04:04 GMT"}, 412),
        # If-Match that holds wins over a failing If-Unmodified-Since (RFC 7232, S3).
        ({"if-match": '"abc"', "if-unmodified-since": "Fri, 02 Jan 2026 03:04:04 GMT"}, None),
        ({"if-modified-since": "not a date"}, None),
    ],
)
def test_conditionals(headers: dict[str, str], expected: int | None) -> None:
    assert check_conditions(headers, INFO) == expected


async def test_token_bucket_keeps_the_average_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(10):
        await bucket.take(500)
    # 5,000 bytes at 1,000 B/s with a one-second burst: about 4 seconds of waiting.
    assert sum(slept) == pytest.approx(4.0)


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    settings = GatewaySettings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    app = GatewayApp.__new__(GatewayApp)
    app.settings = settings
    via_proxy = {"client": ("10.1.2.3", 1)}
    direct = {"client": ("198.51.100.7", 1)}
    xff = {"x-forwarded-for": "203.0.113.9, 10.9.9.9"}
    assert app._client_address(via_proxy, xff) == "203.0.113.9"
    assert app._client_address(direct, xff) == "198.51.100.7"
    assert app._client_address(via_proxy, {}) == "10.1.2.3"
