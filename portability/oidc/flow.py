"""One sign-in in flight: `state`, `nonce` and the PKCE verifier, kept in a signed cookie.

The cookie is signed with a key of its own derived from the master key, lives ten minutes,
and is deleted when the provider sends the browser back, so a callback is accepted once, in
the browser that started it, with the state that browser was given.
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

from authlib.oauth2.rfc7636 import create_s256_code_challenge

FLOW_COOKIE = "ferry_oidc_flow"
FLOW_MAX_AGE = 600


class FlowError(Exception):
    """No sign-in in flight here: the cookie is missing, forged, damaged or too old."""


@dataclass(frozen=True)
class Flow:
    state: str
    nonce: str
    verifier: str
    next: str
    issued_at: int

    @property
    def code_challenge(self) -> str:
        challenge: str = create_s256_code_challenge(self.verifier)
        return challenge


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FlowCodec:
    def __init__(
        self,
        master_key: bytes,
        *,
        max_age: int = FLOW_MAX_AGE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._key = hmac.new(master_key, b"ferry oidc sign-in flow v1", hashlib.sha256).digest()
        self.max_age = max_age
        self._clock = clock

    def new(self, next_path: str) -> Flow:
        return Flow(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),  # 64 characters: RFC 7636 asks for 43-128
            next=next_path,
            issued_at=int(self._clock().timestamp()),
        )

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dumps(self, flow: Flow) -> str:
        body: dict[str, object] = {
            "s": flow.state,
            "n": flow.nonce,
            "v": flow.verifier,
            "x": flow.next,
            "t": flow.issued_at,
        }
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._signature(payload)}"

    def loads(self, value: str | None) -> Flow:
        if not value:
            raise FlowError("no sign-in in flight")
        payload, _, signature = value.partition(".")
        if not hmac.compare_digest(self._signature(payload).encode(), signature.encode()):
            raise FlowError("the sign-in cookie is not ours")
        try:
            body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            flow = Flow(
                state=str(body["s"]),
                nonce=str(body["n"]),
                verifier=str(body["v"]),
                next=str(body["x"]),
                issued_at=int(body["t"]),
            )
        except (ValueError, KeyError, TypeError):
            raise FlowError("the sign-in cookie is damaged") from None
        if int(self._clock().timestamp()) - flow.issued_at >= self.max_age:
            raise FlowError("the sign-in took too long")
        return flow
