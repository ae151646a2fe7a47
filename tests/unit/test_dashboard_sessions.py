"""Dashboard session cookies and CSRF tokens, with an exact clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from portability.dashboard.app import safe_next
from portability.dashboard.sessions import (
    SessionCodec,
    SessionError,
    SessionExpired,
    csrf_matches,
)
from tests.support.dashboard_site import START, Clock

KEY = bytes(range(32))


def test_a_cookie_round_trips_and_carries_no_api_key() -> None:
    codec = SessionCodec(KEY, clock=Clock())
    data = codec.new("5b0d7d3e-0000-4000-8000-000000000001")
    value = codec.dumps(data)
    assert codec.loads(value) == data
    assert "fk_" not in value and len(data.csrf) >= 32


def test_a_session_ends_after_max_age() -> None:
    clock = Clock()
    codec = SessionCodec(KEY, max_age=3600, clock=clock)
    value = codec.dumps(codec.new("k"))
    clock.now = START + timedelta(seconds=3599)
    codec.loads(value)
    clock.now = START + timedelta(seconds=3600)
    with pytest.raises(SessionExpired):
        codec.loads(value)


@pytest.mark.parametrize("value", [None, "", "garbage", "a.b", "e30.", "e30.AAAA"])
def test_damaged_cookies_are_refused(value: str | None) -> None:
    with pytest.raises(SessionError):
        SessionCodec(KEY).loads(value)


def test_a_cookie_signed_with_another_master_key_is_refused() -> None:
    value = SessionCodec(bytes(32)).dumps(SessionCodec(bytes(32)).new("k"))
    with pytest.raises(SessionError) as caught:
        SessionCodec(KEY).loads(value)
    assert not isinstance(caught.value, SessionExpired)


def test_a_tampered_payload_is_refused() -> None:
    codec = SessionCodec(KEY)
    payload, _, signature = codec.dumps(codec.new("k")).partition(".")
    forged = codec.dumps(codec.new("other")).partition(".")[0]
    with pytest.raises(SessionError):
        codec.loads(f"{forged}.{signature}")
    assert payload != forged


def test_csrf_tokens_must_match_exactly() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd")
    assert not csrf_matches("abc", "")
    assert not csrf_matches(None, None)
    assert not csrf_matches("", "")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/credentials", "/credentials"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
    ],
)
def test_login_redirects_stay_on_the_site(given: str, expected: str) -> None:
    assert safe_next(given) == expected
