"""Signed session cookies and CSRF tokens for the dashboard.

The cookie holds the session's random id (its row is in `dashboard_sessions`, see
session_store.py), a CSRF token and when the session started, signed with an HMAC key derived
from the master key. The signature turns away forged cookies before the database is asked;
the row decides whether a genuine one still stands (signed out, signed out everywhere, or its
API key revoked). Sessions end after `max_age` seconds whatever happens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

SESSION_COOKIE = "ferry_session"
LOGIN_CSRF_COOKIE = "ferry_login_csrf"
CSRF_FIELD = "csrf_token"
DEFAULT_MAX_AGE = 8 * 3600


class SessionError(Exception):
    """The cookie is missing, forged or damaged: the visitor signs in again."""


class SessionExpired(SessionError):
    """The cookie is genuine but too old."""


@dataclass(frozen=True)
class SessionData:
    session_id: str
    csrf: str
    issued_at: int  # unix seconds


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Turns SessionData into a signed cookie value and back, with an injectable clock."""

    def __init__(
        self,
        master_key: bytes,
        *,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        # A key of its own, so a cookie can never be replayed as anything else we sign.
        self._key = hmac.new(master_key, b"ferry dashboard session v2", hashlib.sha256).digest()
        self.max_age = max_age
        self._clock = clock

    def now(self) -> int:
        return int(self._clock().timestamp())

    def new(self, session_id: str) -> SessionData:
        return SessionData(session_id=session_id, csrf=new_csrf_token(), issued_at=self.now())

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dumps(self, data: SessionData) -> str:
        body = json.dumps(
            {"s": data.session_id, "c": data.csrf, "t": data.issued_at}, separators=(",", ":")
        )
        payload = _b64(body.encode())
        return f"{payload}.{self._signature(payload)}"

    def loads(self, value: str | None) -> SessionData:
        if not value:
            raise SessionError("no session")
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(self._signature(payload).encode(), signature.encode()):
            raise SessionError("bad signature")
        try:
            body = json.loads(_unb64(payload))
            data = SessionData(
                session_id=str(body["s"]), csrf=str(body["c"]), issued_at=int(body["t"])
            )
        except (ValueError, KeyError, TypeError):
            raise SessionError("damaged session") from None
        if self.now() - data.issued_at >= self.max_age:
            raise SessionExpired("session expired")
        return data
