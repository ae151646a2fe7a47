"""A real OpenID Connect provider's tokens: its access tokens at Ferry's API, and the checks
on its ID tokens.

The provider is oidc-provider-mock in a process of its own (tests/support/oidc_provider.py);
Ferry's API app runs in starlette's TestClient on a real database. The provider's own web app
gets access tokens for its users; those for Ferry's audience list the user's requests and
obey the admin rule, while tokens for another audience, a non-admin's at admin routes, and
repeated refusals are turned away. ID tokens are refused with the wrong nonce or audience,
once expired, or when signed by another key.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc import jwk, jwt
from starlette.testclient import TestClient

from portability.oidc.exceptions import TokenInvalid
from portability.oidc.provider import OidcClient
from tests.support.oidc_provider import OidcProvider
from tests.support.oidc_signin import (
    CLIENT_ID,
    People,
    code_flow_tokens,
    create_accounts,
    provider_keys,
    running_provider,
    settings,
    site_client,
)


@pytest.fixture(scope="module")
def people() -> People:
    return People(uuid.uuid4().hex[:8])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory, people: People) -> Iterator[OidcProvider]:
    with running_provider(tmp_path_factory.mktemp("oidc"), people) as provider:
        yield provider


@pytest.fixture(scope="module")
def accounts(database_url: str, people: People) -> dict[str, str]:
    return asyncio.run(create_accounts(database_url, people))


@pytest.fixture
def site(
    database_url: str, tmp_path: Path, provider: OidcProvider, accounts: dict[str, str]
) -> Iterator[TestClient]:
    yield from site_client(database_url, tmp_path, OidcClient(settings(provider)))


# -- the provider's access tokens at the API ---------------------------------------------


def access_token(provider: OidcProvider, sub: str, *, resource: str = "") -> str:
    """An access token as the provider's own web app gets one for its user."""
    answer = code_flow_tokens(
        provider,
        "provider-web-app",
        sub,
        redirect="http://127.0.0.1:1/provider-app/callback",
        resource=resource,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_the_providers_access_token_lists_alices_requests(
    site: TestClient, provider: OidcProvider, accounts: dict[str, str]
) -> None:
    created = site.post(
        "/api/portability/export",
        json={"request_type": "export", "format": "json"},
        headers={"authorization": f"Bearer {accounts['alice']}"},
    )
    assert created.status_code == 202, created.text
    token = access_token(provider, "alice")
    listed = site.get("/api/portability/requests", headers={"authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    ids = [r["id"] for r in listed.json()["requests"]]
    assert created.json()["id"] in ids
    # The admin rule holds for tokens too: alice's group makes her one.
    admin = site.get("/api/admin/credentials", headers={"authorization": f"Bearer {token}"})
    assert admin.status_code == 200, admin.text


def test_a_token_for_another_audience_is_401(site: TestClient, provider: OidcProvider) -> None:
    token = access_token(provider, "alice", resource="https://another-api.example")
    answer = site.get("/api/portability/requests", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert (
        "audience" in answer.json()["error"]["message"]
        or "aud" in answer.json()["error"]["message"]
    )


def test_a_non_admin_token_is_refused_at_admin_routes(
    site: TestClient, provider: OidcProvider
) -> None:
    token = access_token(provider, "bob")
    answer = site.get("/api/admin/credentials", headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 403


def test_refused_tokens_count_against_the_failed_key_limit(
    site: TestClient, provider: OidcProvider
) -> None:
    token = access_token(provider, "alice", resource="https://another-api.example")
    statuses = [
        site.get("/api/portability/requests", headers={"authorization": f"Bearer {token}"})
        for _ in range(4)
    ]
    assert [s.status_code for s in statuses] == [401, 401, 401, 429]
    assert statuses[-1].headers["retry-after"]


# -- the token checks, against the provider's own tokens -----------------------------------


def id_token_for(provider: OidcProvider, client_id: str, nonce: str) -> str:
    answer = code_flow_tokens(
        provider, client_id, "alice", redirect="http://127.0.0.1:1/cb", nonce=nonce
    )
    return str(answer.json()["id_token"])


async def test_id_token_checks(provider: OidcProvider) -> None:
    oidc = OidcClient(settings(provider))
    good = id_token_for(provider, CLIENT_ID, "n-1")
    claims = await oidc.verify_id_token(good, nonce="n-1")
    assert claims["sub"] == "alice" and claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    with pytest.raises(TokenInvalid, match="nonce"):
        await oidc.verify_id_token(good, nonce="another sign-in's")
    with pytest.raises(TokenInvalid, match="aud"):
        await oidc.verify_id_token(id_token_for(provider, "another-client", "n-2"), nonce="n-2")
    expired = OidcClient(settings(provider), clock=lambda: time.time() + 3600 + 61)
    with pytest.raises(TokenInvalid, match="expired"):
        await expired.verify_id_token(good, nonce="n-1")
    # Within the clock skew it still passes: the provider's clock may be a little behind.
    nearly = OidcClient(settings(provider), clock=lambda: time.time() + 3600 + 30)
    assert (await nearly.verify_id_token(good, nonce="n-1"))["sub"] == "alice"


async def test_a_token_signed_by_another_key_is_refused(provider: OidcProvider) -> None:
    oidc = OidcClient(settings(provider))
    real = jwt.decode(id_token_for(provider, CLIENT_ID, "n-3"), provider_keys(provider))
    impostor = jwk.RSAKey.generate_key(2048)
    # Same claims, same key id as the provider's: only the signature differs.
    kid = provider_keys(provider).keys[0].kid
    forged = jwt.encode({"alg": "RS256", "kid": kid}, real.claims, impostor)
    with pytest.raises(TokenInvalid, match="signature"):
        await oidc.verify_id_token(forged, nonce="n-3")
    # Without a key id, no key of the provider's verifies it either.
    anonymous = jwt.encode({"alg": "RS256"}, real.claims, impostor)
    with pytest.raises(TokenInvalid, match="signature"):
        await oidc.verify_id_token(anonymous, nonce="n-3")
    # An HMAC keyed with the client secret is no signature of the provider's.
    hmac_key = jwk.OctKey.import_key(b"s3cret" * 6)
    shared = jwt.encode({"alg": "HS256"}, real.claims, hmac_key)
    with pytest.raises(TokenInvalid):
        await oidc.verify_id_token(shared, nonce="n-3")
