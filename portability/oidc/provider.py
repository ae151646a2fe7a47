"""The OpenID Connect provider as Ferry talks to it: discovery, JWKS, the token endpoint,
and the checks every ID token and access token passes before anyone is let in.

The discovery document is kept an hour; the key set until a token names a key it lacks
(the provider rotated) or names none, refetched then at most once a minute, so a flood of
tokens with made-up key ids cannot make Ferry hammer the provider. Tokens are checked with joserfc
(authlib's JOSE library): an asymmetric signature by a key in the provider's JWKS (never
`none`, never an HMAC a client secret could forge), `iss`, `aud`, `exp` (and `nbf`, `iat`)
with the configured clock skew, and for ID tokens the sign-in's `nonce`.

The provider is configured by the operator, not by a user, so it is not subject to the
egress policy.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import aiohttp
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from portability.oidc.exceptions import ProviderUnavailable, SignInRefused, TokenInvalid
from portability.oidc.settings import OidcSettings

# Asymmetric algorithms only: "none" and HS* (keyed with the client secret, which is not a
# secret from every party) would let a forged token through.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
METADATA_TTL = 3600.0
JWKS_MIN_REFRESH = 60.0
MAX_ANSWER = 1024 * 1024  # a discovery document, a key set or a token answer is small
TIMEOUT = aiohttp.ClientTimeout(total=10)


@dataclass(frozen=True)
class ProviderMetadata:
    """What Ferry uses of the discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""


class OidcClient:
    """One provider: cached metadata and keys, the code exchange, token checks."""

    def __init__(self, settings: OidcSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    # -- the provider's documents ---------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        if self._metadata is not None and time.monotonic() - self._metadata_at < METADATA_TTL:
            return self._metadata
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await _get_json(url)
        try:
            metadata = ProviderMetadata(
                issuer=str(document["issuer"]),
                authorization_endpoint=str(document["authorization_endpoint"]),
                token_endpoint=str(document["token_endpoint"]),
                jwks_uri=str(document["jwks_uri"]),
                end_session_endpoint=str(document.get("end_session_endpoint") or ""),
            )
        except KeyError as exc:
            raise ProviderUnavailable(
                f"the identity provider's discovery document lacks {exc.args[0]!r}"
            ) from None
        # OpenID Connect Discovery 4.3: the document speaks for the issuer it was fetched for.
        if metadata.issuer.rstrip("/") != self.settings.issuer.rstrip("/"):
            raise ProviderUnavailable(
                f"the identity provider names itself {metadata.issuer!r}, "
                f"not the configured issuer {self.settings.issuer!r}"
            )
        self._metadata, self._metadata_at = metadata, time.monotonic()
        return metadata

    async def _key_set(self, kid: str | None) -> KeySet:
        async with self._lock:
            # A token without a kid could be signed by a rotated key too: it may refresh the
            # set as often as an unknown kid may, once a minute.
            known = self._keys is not None and kid is not None and _has_kid(self._keys, kid)
            stale = time.monotonic() - self._keys_at >= JWKS_MIN_REFRESH
            if self._keys is None or (not known and stale):
                metadata = await self.metadata()
                try:
                    self._keys = KeySet.import_key_set(await _get_json(metadata.jwks_uri))  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError) as exc:
                    raise ProviderUnavailable(
                        f"the identity provider's key set cannot be read: {exc}"
                    ) from None
                self._keys_at = time.monotonic()
            return self._keys

    def form_origins(self) -> tuple[str, ...]:
        """Where sign-out's redirect goes: the issuer's origin and, once the discovery
        document is known, its end-session endpoint's (the dashboard's CSP names both)."""
        origins = [_origin(self.settings.issuer)]
        if self._metadata is not None and self._metadata.end_session_endpoint:
            origins.append(_origin(self._metadata.end_session_endpoint))
        return tuple(dict.fromkeys(origins))

    # -- sign-in --------------------------------------------------------------------------

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_challenge: str
    ) -> str:
        metadata = await self.metadata()
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            self.settings.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.settings.scopes),
            state=state,
            nonce=nonce,
            code_challenge=code_challenge,
            code_challenge_method="S256",
        )
        return url

    async def exchange_code(self, code: str, *, verifier: str, redirect_uri: str) -> str:
        """The ID token the provider hands out for `code` (checked by the caller)."""
        metadata = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"accept": "application/json"}
        if self.settings.client_secret:
            headers["authorization"] = _basic_auth(
                self.settings.client_id, self.settings.client_secret
            )
        else:
            form["client_id"] = self.settings.client_id  # a public client: PKCE alone
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as http,
                http.post(metadata.token_endpoint, data=form, headers=headers) as answer,
            ):
                body = await answer.content.read(MAX_ANSWER)
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderUnavailable(
                f"the identity provider's token endpoint did not answer ({type(exc).__name__})"
            ) from None
        document = _json_object(body)
        if status == 400 or status == 401:
            # invalid_grant: a code used twice, expired, or issued to another client.
            reason = str(document.get("error") or "refused")
            raise SignInRefused(f"the identity provider refused the sign-in code ({reason})")
        if status != 200 or not isinstance(document.get("id_token"), str):
            raise ProviderUnavailable(
                f"the identity provider's token endpoint answered {status} without an ID token"
            )
        return str(document["id_token"])

    def end_session_url(
        self,
        metadata: ProviderMetadata,
        *,
        post_logout_redirect_uri: str,
        id_token_hint: str = "",
    ) -> str:
        """RP-initiated logout at the provider, or "" where it offers none."""
        endpoint = metadata.end_session_endpoint
        if not endpoint:
            return ""
        params = {
            "client_id": self.settings.client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
        }
        if id_token_hint:  # some providers (Okta) insist on it
            params["id_token_hint"] = id_token_hint
        query = urlencode(params)
        return endpoint + ("&" if "?" in endpoint else "?") + query

    # -- token checks ---------------------------------------------------------------------

    async def verify_id_token(self, token: str, *, nonce: str) -> dict[str, Any]:
        claims = await self._verify(token, audience=self.settings.client_id)
        if claims.get("nonce") != nonce:
            raise TokenInvalid("the ID token's nonce is not this sign-in's")
        audiences = claims.get("aud")
        if isinstance(audiences, list) and len(audiences) > 1:
            # OpenID Connect Core 3.1.3.7: with several audiences, azp must be us.
            if claims.get("azp") != self.settings.client_id:
                raise TokenInvalid("the ID token was issued to another client")
        return claims

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        if not self.settings.api_audience:
            raise TokenInvalid("bearer tokens from the identity provider are not accepted")
        return await self._verify(token, audience=self.settings.api_audience)

    async def _verify(self, token: str, *, audience: str) -> dict[str, Any]:
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError):
            raise TokenInvalid("the token is not a JWT") from None
        kid = header.get("kid")
        keys = await self._key_set(kid if isinstance(kid, str) else None)
        decoded = _decode(token, _candidates(keys, header))
        metadata = await self.metadata()
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._clock()),
            leeway=self.settings.clock_skew_seconds,
            iss={"essential": True, "value": metadata.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise TokenInvalid(f"the token is not valid here ({exc})") from None
        return dict(decoded.claims)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _basic_auth(client_id: str, secret: str) -> str:
    """client_secret_basic: RFC 6749 2.3.1 form-encodes both before base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


def _candidates(keys: KeySet, header: Mapping[str, Any]) -> list[Any]:
    """The key a token names; without a kid (some providers leave it out of ID tokens),
    each key of the set in turn."""
    kid = header.get("kid")
    if isinstance(kid, str):
        named = [key for key in keys.keys if key.kid == kid]
        if not named:
            raise TokenInvalid("the token is signed by a key the identity provider does not list")
        return named
    return list(keys.keys)


def _decode(token: str, candidates: list[Any]) -> jwt.Token:
    problem = "no key"
    for key in candidates:
        try:
            return jwt.decode(token, key, algorithms=list(ALGORITHMS))
        except (JoseError, ValueError) as exc:
            problem = str(exc) or type(exc).__name__
    raise TokenInvalid(f"the token's signature does not verify ({problem})")


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as http,
            http.get(url, headers={"accept": "application/json"}) as answer,
        ):
            body = await answer.content.read(MAX_ANSWER)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderUnavailable(
            f"the identity provider did not answer at {url} ({type(exc).__name__})"
        ) from None
    if status != 200:
        raise ProviderUnavailable(f"the identity provider answered {status} at {url}")
    document = _json_object(body)
    if not document:
        raise ProviderUnavailable(f"the identity provider's answer at {url} is not JSON")
    return document


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
