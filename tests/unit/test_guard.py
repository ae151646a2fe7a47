"""The door of the API listener: failed-key limits, client addresses, Secure cookies."""

from __future__ import annotations

from starlette.requests import Request

from portability.guard import DoorPolicy, FailureLimiter
from sts.scope import parse_cidrs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(peer: str, headers: dict[str, str] | None = None, scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": scheme,
            "path": "/",
            "raw_path": b"/",
            "query_string": b"",
            "server": ("127.0.0.1", 8000),
            "client": (peer, 40000),
            "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        }
    )


def test_failures_spend_a_budget_that_refills() -> None:
    clock = Clock()
    limiter = FailureLimiter(failures=3, window=60, clock=clock)
    keys = ["addr:203.0.113.9"]
    for _ in range(3):
        assert limiter.retry_after(keys) == 0
        limiter.failed(keys)
    assert limiter.retry_after(keys) == 20  # one failure back every 60/3 seconds
    assert limiter.retry_after(["addr:198.51.100.1"]) == 0  # others are not affected
    clock.now += 20
    assert limiter.retry_after(keys) == 0
    limiter.failed(keys)
    assert limiter.retry_after(keys) == 20


def test_the_limiter_forgets_the_oldest_keys_under_a_flood() -> None:
    limiter = FailureLimiter(failures=1, window=60, clock=Clock(), max_keys=100)
    for i in range(1000):
        limiter.failed([f"addr:{i}"])
    assert len(limiter._buckets) <= 100
    assert limiter.retry_after(["addr:999"]) > 0


def test_client_address_believes_only_trusted_proxies() -> None:
    door = DoorPolicy(trusted_proxies=parse_cidrs(["10.0.0.0/8"]))
    spoofed = {"x-forwarded-for": "1.2.3.4"}
    assert door.client(request("203.0.113.9", spoofed)) == "203.0.113.9"
    chain = {"x-forwarded-for": "1.2.3.4, 198.51.100.7, 10.0.0.2"}
    assert door.client(request("10.0.0.1", chain)) == "198.51.100.7"
    assert door.client(request("10.0.0.1")) == "10.0.0.1"


def test_cookies_are_secure_behind_tls() -> None:
    plain = DoorPolicy()
    assert not plain.secure_cookies(request("127.0.0.1"))
    assert plain.secure_cookies(request("127.0.0.1", scheme="https"))
    assert DoorPolicy(public_url_is_https=True).secure_cookies(request("127.0.0.1"))
    proxied = DoorPolicy(trusted_proxies=parse_cidrs(["10.0.0.0/8"]))
    https = {"x-forwarded-proto": "https"}
    assert proxied.secure_cookies(request("10.0.0.1", https))
    assert not proxied.secure_cookies(request("203.0.113.9", https))  # not a trusted proxy


def test_limit_keys_count_the_address_and_the_key_prefix() -> None:
    door = DoorPolicy()
    assert door.limit_keys(request("203.0.113.9"), "fk_abcdefghijXYZ") == [
        "addr:203.0.113.9",
        "prefix:fk_abcdefghi",
    ]
    assert door.limit_keys(request("203.0.113.9"), "") == ["addr:203.0.113.9"]
