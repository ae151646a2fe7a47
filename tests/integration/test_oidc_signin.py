"""Sign-in through a real OpenID Connect provider, from the login page to the admin console.

The provider is oidc-provider-mock in a process of its own on a free loopback port
(tests/support/oidc_provider.py); Ferry's API app runs in starlette's TestClient on a real
database and talks to the provider over HTTP as it would in production: discovery, JWKS, the
token endpoint. The browser's part (the provider's login form, following redirects) is played
with httpx. What is checked is what a person would notice: who they are signed in as, whether
the admin console opens, and a readable refusal for a forged state, a replayed code, an
unknown email or an expired ID token. The provider's tokens are in test_oidc_tokens.py.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwk, jwt
from sqlalchemy import select
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from db.models import ApiKey, User
from portability.oidc.provider import OidcClient
from portability.oidc.settings import OidcSettings
from tests.support.oidc_provider import OidcProvider
from tests.support.oidc_signin import (
    API_AUDIENCE,
    CLIENT_ID,
    People,
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


def start(client: TestClient, next_path: str = "/") -> str:
    """Press "Sign in with …": the provider's authorization URL the browser is sent to."""
    page = client.get("/login")
    assert "Sign in with Example ID" in page.text
    answer = client.get(f"/login/oidc?next={next_path}")
    assert answer.status_code == 303, answer.text
    assert "ferry_oidc_flow=" in answer.headers["set-cookie"]
    return answer.headers["location"]


def provider_login(authorize_url: str, sub: str) -> str:
    """The provider's login form, as a person fills it in: the callback URL it sends back."""
    query = parse_qs(urlsplit(authorize_url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"][0] and query["nonce"][0] and query["code_challenge"][0]
    answer = httpx.post(authorize_url, data={"sub": sub}, follow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith("http://testserver/login/oidc/callback?")
    return location.removeprefix("http://testserver")


def sign_in(client: TestClient, sub: str) -> httpx.Response:
    return client.get(provider_login(start(client), sub))


def assert_clean(html: str) -> None:
    assert "Traceback" not in html and 'File "' not in html


def test_alice_signs_in_and_is_an_admin_by_her_group(site: TestClient, people: People) -> None:
    answer = sign_in(site, "alice")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/"
    cookie = answer.headers["set-cookie"]
    assert "ferry_session=" in cookie and "HttpOnly" in cookie
    overview = site.get("/")
    assert overview.status_code == 200
    assert people.email("alice") in overview.text
    admin = site.get("/admin")
    assert admin.status_code == 200, admin.text
    row = re.search(
        rf'<tr data-user="{re.escape(people.email("alice"))}">(.*?)</tr>', admin.text, re.S
    )
    assert row and "OpenID Connect" in row.group(1)


def test_bob_without_the_group_is_not_an_admin(site: TestClient, people: People) -> None:
    # Ferry's own table says admin; with admin_claim set the provider decides.
    assert sign_in(site, "bob").status_code == 303
    assert people.email("bob") in site.get("/").text
    admin = site.get("/admin")
    assert admin.status_code == 403
    assert "Admins only" in admin.text


def test_an_unknown_email_is_refused_with_a_clear_page(site: TestClient, people: People) -> None:
    answer = sign_in(site, "mallory")
    assert answer.status_code == 403
    assert f"no Ferry account for {people.email('mallory')}" in answer.text
    assert "ferry_session=" not in answer.headers.get("set-cookie", "")
    assert_clean(answer.text)


def test_an_unverified_email_is_refused(site: TestClient) -> None:
    answer = sign_in(site, "eve")
    assert answer.status_code == 403
    assert "has not verified" in answer.text


def test_unknown_users_are_created_when_allowed(
    database_url: str, tmp_path: Path, provider: OidcProvider, people: People
) -> None:
    oidc = OidcClient(settings(provider, auto_create_users=True))
    for client in site_client(database_url, tmp_path, oidc):
        assert sign_in(client, "mallory").status_code == 303
        assert people.email("mallory") in client.get("/").text
    engine = create_engine(database_url)

    async def keys_of_mallory() -> int:
        async with session_factory(engine)() as db:
            user = await db.scalar(select(User).where(User.email == people.email("mallory")))
            assert user is not None and user.last_sign_in_method == "oidc"
            return len(list(await db.scalars(select(ApiKey).where(ApiKey.user_id == user.id))))

    try:
        assert asyncio.run(keys_of_mallory()) == 0  # no API key nobody was ever shown
    finally:
        asyncio.run(engine.dispose())


def test_an_unreachable_provider_is_a_page_and_a_503(
    database_url: str, tmp_path: Path, accounts: dict[str, str]
) -> None:
    from tests.support.ferry import free_port

    gone = OidcSettings(
        issuer=f"http://127.0.0.1:{free_port()}",
        client_id=CLIENT_ID,
        name="Example ID",
        api_audience=API_AUDIENCE,
    )
    for client in site_client(database_url, tmp_path, OidcClient(gone)):
        answer = client.get("/login/oidc")
        assert answer.status_code == 503
        assert "Example ID could not be reached just now" in answer.text
        assert_clean(answer.text)
        token = jwt.encode({"alg": "RS256", "kid": "k1"}, {"sub": "x"}, jwk.RSAKey.generate_key())
        api = client.get("/api/portability/requests", headers={"authorization": f"Bearer {token}"})
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "unavailable"
        # API keys do not need the provider.
        own = client.get(
            "/api/portability/requests", headers={"authorization": f"Bearer {accounts['alice']}"}
        )
        assert own.status_code == 200


def test_cookies_are_secure_when_the_door_says_so(
    database_url: str, tmp_path: Path, provider: OidcProvider, accounts: dict[str, str]
) -> None:
    for client in site_client(database_url, tmp_path, OidcClient(settings(provider)), https=True):
        started = client.get("/login/oidc?next=/")
        flow_cookie = started.headers["set-cookie"]
        assert flow_cookie.startswith("ferry_oidc_flow=")
        assert "Secure" in flow_cookie and "HttpOnly" in flow_cookie
        assert "Path=/login/oidc" in flow_cookie and "SameSite=lax" in flow_cookie
        # The TestClient's http:// would not send a Secure cookie back; a browser on https does.
        client.cookies.set("ferry_oidc_flow", client.cookies.get("ferry_oidc_flow") or "")
        answer = client.get(provider_login(started.headers["location"], "alice"))
        assert answer.status_code == 303, answer.text
        session = [c for c in answer.headers.get_list("set-cookie") if "ferry_session=" in c]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0]


def test_denying_at_the_provider_is_a_readable_page(site: TestClient) -> None:
    authorize = start(site)
    denied = httpx.post(authorize, data={"action": "deny"}, follow_redirects=False, timeout=10)
    assert denied.status_code == 302
    answer = site.get(denied.headers["location"].removeprefix("http://testserver"))
    assert answer.status_code == 401
    assert "Example ID did not sign you in (access_denied" in answer.text
    assert_clean(answer.text)


def test_a_forged_state_is_refused(site: TestClient) -> None:
    callback = provider_login(start(site), "alice")
    forged = re.sub(r"state=[^&]+", "state=forged-by-someone", callback)
    answer = site.get(forged)
    assert answer.status_code == 400
    assert "does not belong to the sign-in this browser started" in answer.text
    assert_clean(answer.text)
    assert site.get("/").status_code == 303  # not signed in


def test_a_callback_without_its_flow_cookie_is_refused(site: TestClient) -> None:
    callback = provider_login(start(site), "alice")
    site.cookies.clear()
    answer = site.get(callback)
    assert answer.status_code == 400
    assert "not one this browser started" in answer.text


def test_a_replayed_code_is_refused(site: TestClient) -> None:
    callback = provider_login(start(site), "alice")
    flow = site.cookies.get("ferry_oidc_flow")
    assert site.get(callback).status_code == 303
    # Someone who copied both the callback URL and the flow cookie tries again.
    site.cookies.set("ferry_oidc_flow", flow or "", path="/login/oidc")
    site.cookies.delete("ferry_session")
    answer = site.get(callback)
    assert answer.status_code == 401
    assert "refused the sign-in code" in answer.text
    assert_clean(answer.text)


def test_an_expired_id_token_is_refused(
    database_url: str, tmp_path: Path, provider: OidcProvider, accounts: dict[str, str]
) -> None:
    # Ferry's clock two hours on: the provider's hour-long ID token is past exp + skew.
    oidc = OidcClient(settings(provider), clock=lambda: time.time() + 7200)
    for client in site_client(database_url, tmp_path, oidc):
        answer = sign_in(client, "alice")
        assert answer.status_code == 401
        assert "could not be accepted" in answer.text and "expired" in answer.text


def test_sign_out_ends_the_session_here_and_at_the_provider(
    site: TestClient, provider: OidcProvider
) -> None:
    assert sign_in(site, "alice").status_code == 303
    page = site.get("/")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    # The sign-out form's answer redirects to the provider: the page's CSP must allow it.
    assert f"form-action 'self' {provider.issuer};" in page.headers["content-security-policy"]
    session = site.cookies.get("ferry_session")
    answer = site.post("/logout", data={"csrf_token": csrf.group(1)})
    assert answer.status_code == 303
    location = answer.headers["location"]
    end_session = provider.discovery()["end_session_endpoint"]
    assert location.startswith(end_session + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["post_logout_redirect_uri"] == ["http://testserver/login?signed_out=1"]
    # The session's own ID token goes back as the hint (Okta, for one, requires it).
    hint = jwt.decode(query["id_token_hint"][0], provider_keys(provider))
    assert hint.claims["sub"] == "alice" and hint.claims["aud"] in (CLIENT_ID, [CLIENT_ID])
    # The copied cookie no longer opens anything: the session ended on the server.
    site.cookies.set("ferry_session", session or "")
    assert site.get("/").status_code == 401
    site.cookies.clear()
    assert "You are signed out." in site.get("/login?signed_out=1").text


def test_api_key_sign_in_can_be_turned_off(
    database_url: str, tmp_path: Path, provider: OidcProvider, accounts: dict[str, str]
) -> None:
    oidc = OidcClient(settings(provider, allow_api_key_signin=False))
    for client in site_client(database_url, tmp_path, oidc):
        page = client.get("/login")
        assert "Sign in with Example ID" in page.text
        assert 'name="api_key"' not in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        token = csrf.group(1) if csrf else ""
        answer = client.post("/login", data={"csrf_token": token, "api_key": accounts["alice"]})
        assert answer.status_code == 403
        assert "turned off" in answer.text


async def test_the_admin_console_names_how_each_user_signed_in(
    site: TestClient, database_url: str, people: People
) -> None:
    assert sign_in(site, "alice").status_code == 303
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as db:
            alice = await db.scalar(select(User).where(User.email == people.email("alice")))
    finally:
        await engine.dispose()
    assert alice is not None
    assert alice.last_sign_in_method == "oidc" and alice.last_sign_in_at is not None
