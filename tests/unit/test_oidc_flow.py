"""The sign-in flow's signed cookie: state, nonce and PKCE verifier, exact clocks."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from portability.guard import looks_like_jwt
from portability.oidc.flow import FLOW_MAX_AGE, FlowCodec, FlowError

START = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def test_a_flow_round_trips_and_its_challenge_is_s256_of_the_verifier() -> None:
    codec = FlowCodec(bytes(32), clock=Clock())
    flow = codec.new("/credentials")
    assert codec.loads(codec.dumps(flow)) == flow
    digest = hashlib.sha256(flow.verifier.encode()).digest()
    assert flow.code_challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(flow.verifier) <= 128  # RFC 7636 4.1
    assert len({codec.new("/").state for _ in range(50)}) == 50


def test_a_tampered_foreign_or_old_cookie_is_refused() -> None:
    clock = Clock()
    codec = FlowCodec(bytes(32), clock=clock)
    value = codec.dumps(codec.new("/"))
    payload, _, signature = value.partition(".")
    forged = base64.urlsafe_b64encode(b'{"s":"mine","n":"x","v":"y","x":"/","t":1}').decode()
    for bad in (None, "", "garbage", f"{forged.rstrip('=')}.{signature}", payload + ".AAAA"):
        with pytest.raises(FlowError):
            codec.loads(bad)
    with pytest.raises(FlowError):
        FlowCodec(bytes(range(32)), clock=clock).loads(value)  # another installation's key
    clock.now = START + timedelta(seconds=FLOW_MAX_AGE - 1)
    assert codec.loads(value)
    clock.now = START + timedelta(seconds=FLOW_MAX_AGE)
    with pytest.raises(FlowError, match="too long"):
        codec.loads(value)


def test_jwts_and_api_keys_are_told_apart() -> None:
    assert looks_like_jwt("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")
    assert not looks_like_jwt("fk_" + "a" * 43)
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a.b.c" + "x" * 20000)
