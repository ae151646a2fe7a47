"""What guards the API and the dashboard at their door: failed-key limits, the client's
address behind a proxy, and when a cookie must be `Secure`.

API keys are 256-bit random, so guessing one is hopeless; the limit is against what is
cheaper than guessing: a stolen key's prefix tried with variations, a password manager
filling the wrong field in a loop, a scanner hammering sign-in. Only failures count, so a
valid key used at any rate is never slowed; once an address or a key prefix has spent its
budget, every attempt from it is answered 429 with `Retry-After` before the key is looked at,
so a blocked guesser learns nothing from a right guess either.

The counters live in the process: with several processes each keeps its own (a guesser then
gets one budget per process), which bounds the rate as well for keys of this size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from starlette.requests import Request

from portability.oidc.provider import OidcClient
from sts.scope import Network, client_address, within


class FailureLimiter:
    """A token bucket per key (an address, a key prefix): `failures` failures, then one more
    every `window / failures` seconds."""

    def __init__(
        self,
        *,
        failures: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if failures <= 0 or window <= 0:
            raise ValueError("failures and window must be positive")
        self.capacity = float(failures)
        self.rate = failures / window
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def retry_after(self, keys: Iterable[str]) -> int:
        """Whole seconds until every key may try again; 0 when all may now."""
        now = self._clock()
        wait = 0.0
        for key in keys:
            tokens = self._tokens(key, now)
            if tokens < 1:
                wait = max(wait, (1 - tokens) / self.rate)
        return math.ceil(wait)

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            tokens = self._tokens(key, now) - 1
            self._buckets.pop(key, None)  # re-inserted last: the dict stays oldest-first
            self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            # A flood of distinct keys: forget the oldest half, never grow without bound.
            for key in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[key]


@dataclass(frozen=True)
class DoorPolicy:
    """The API listener's door: who is a trusted proxy, whether cookies must be Secure, the
    failed-key limiter shared by the API and the dashboard's sign-in, and the OpenID Connect
    provider whose tokens are let in beside API keys (None: API keys only)."""

    public_url_is_https: bool = False
    trusted_proxies: tuple[Network, ...] = ()
    limiter: FailureLimiter = field(default_factory=FailureLimiter, compare=False)
    oidc: OidcClient | None = field(default=None, compare=False)

    def client(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        forwarded = request.headers.get("x-forwarded-for")
        return client_address(peer, forwarded, self.trusted_proxies) or ""

    def secure_cookies(self, request: Request) -> bool:
        """True when the browser reached us over TLS: directly, by the configured public URL,
        or through a trusted proxy that says so (the API listener itself sees only http)."""
        if self.public_url_is_https or request.url.scheme == "https":
            return True
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        return forwarded == "https" and within(peer, self.trusted_proxies)

    def limit_keys(self, request: Request, key: str) -> list[str]:
        """What a failed attempt counts against: the client's address, and the key's prefix
        (the 12 characters a user sees in listings) when it looks like a key at all. A JWT's
        first characters are its header, the same for every token of a provider, so a JWT
        counts against the address alone."""
        keys = [f"addr:{self.client(request)}"]
        if key and not looks_like_jwt(key):
            keys.append(f"prefix:{key[:12]}")
        return keys


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts joined by dots; API keys (`fk_` + base64url) have no dot."""
    return token.count(".") == 2 and len(token) <= 16384
