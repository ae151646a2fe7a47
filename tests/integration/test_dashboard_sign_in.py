"""Dashboard sign-in and sessions without a browser: the routes composed on their own, a real
database and a clock the test moves, so session expiry is exact.

What is checked is what a visitor would see: cookie flags (also behind a TLS proxy), the pages
for a wrong key, an expired session and a missing CSRF token, sign-out here and everywhere,
and the limit on failed sign-ins.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from db.engine import create_engine, session_factory
from db.models import ApiKey
from portability.accounts import hash_api_key
from tests.support.dashboard_site import (
    START,
    Site,
    assert_clean,
    csrf_of,
    login,
    open_site,
)


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    with open_site(database_url, tmp_path) as site:
        yield site


def test_pages_need_a_session(site: Site) -> None:
    answer = site.client.get("/credentials")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/credentials"


def test_the_session_cookie_is_signed_httponly_and_lax(site: Site) -> None:
    form = site.client.get("/login")
    assert "httponly" in form.headers["set-cookie"].lower()
    answer = site.client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "api_key": site.keys["user"], "next": "/"},
    )
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("ferry_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert site.keys["user"] not in cookie
    page = site.client.get("/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_over_tls(database_url: str, site: Site) -> None:
    client = site.client
    client.base_url = client.base_url.copy_with(scheme="https")
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "api_key": site.keys["user"], "next": "/"},
    )
    assert "Secure" in answer.headers["set-cookie"]


def test_a_wrong_key_gets_a_clear_page(site: Site) -> None:
    form = site.client.get("/login")
    answer = site.client.post(
        "/login", data={"csrf_token": csrf_of(form.text), "api_key": "fk_wrong", "next": "/"}
    )
    assert answer.status_code == 401
    assert "That API key was not accepted" in answer.text
    assert "ferry_session" not in answer.headers.get("set-cookie", "")
    assert_clean(answer.text)


def test_login_without_its_csrf_token_is_refused(site: Site) -> None:
    site.client.get("/login")
    answer = site.client.post("/login", data={"api_key": site.keys["user"]})
    assert answer.status_code == 403
    assert "This form could not be accepted" in answer.text


def test_an_expired_session_gets_a_clear_page(site: Site) -> None:
    login(site)
    site.clock.now = START + timedelta(seconds=3600)
    answer = site.client.get("/credentials")
    assert answer.status_code == 401
    assert "Your session has expired" in answer.text
    assert 'id="api_key"' in answer.text
    assert_clean(answer.text)


def test_a_form_without_csrf_changes_nothing(site: Site) -> None:
    login(site)
    answer = site.client.post("/credentials", data={"bucket": site.keys["bucket"]})
    assert answer.status_code == 403
    assert "Nothing was changed" in answer.text
    listing = site.client.get("/credentials").text
    assert "None issued yet." in listing


def test_revoking_the_api_key_ends_the_session(site: Site) -> None:
    login(site)

    async def revoke_keys() -> None:
        engine = create_engine(site.database_url)
        async with session_factory(engine).begin() as session:
            await session.execute(
                update(ApiKey)
                .where(ApiKey.key_hash == hash_api_key(site.keys["user"]))
                .values(revoked_at=START)
            )
        await engine.dispose()

    site.client.portal.call(revoke_keys)  # type: ignore[union-attr]
    answer = site.client.get("/")
    assert answer.status_code == 401
    assert "no longer valid" in answer.text


def test_a_copied_cookie_is_dead_after_sign_out(site: Site) -> None:
    csrf = login(site)
    stolen = site.client.cookies.get("ferry_session")
    assert stolen
    site.client.post("/logout", data={"csrf_token": csrf})
    with TestClient(site.client.app, follow_redirects=False) as thief:
        thief.cookies.set("ferry_session", stolen)
        answer = thief.get("/")
    assert answer.status_code == 401
    assert "Your session has ended" in answer.text


def test_an_admin_signs_a_user_out_everywhere(site: Site) -> None:
    login(site, "user")
    assert site.client.get("/").status_code == 200
    with TestClient(site.client.app, follow_redirects=False) as admin:
        form = admin.get("/login")
        admin.post(
            "/login",
            data={"csrf_token": csrf_of(form.text), "api_key": site.keys["admin"], "next": "/"},
        )
        csrf = csrf_of(admin.get("/admin").text)
        email = f"user-{site.keys['bucket'].removeprefix('pages-')}@example.com"
        done = admin.post("/admin/sessions/end", data={"csrf_token": csrf, "email": email})
        assert done.status_code == 303
        assert "Every dashboard session" in admin.get(done.headers["location"]).text
        assert admin.get("/admin").status_code == 200  # the admin's own session stands
    assert site.client.get("/").status_code == 401


def test_sign_in_failures_are_limited(site: Site) -> None:
    form = site.client.get("/login")
    csrf = csrf_of(form.text)
    for i in range(10):
        wrong = site.client.post("/login", data={"csrf_token": csrf, "api_key": f"fk_wrong{i}"})
        assert wrong.status_code == 401
    limited = site.client.post("/login", data={"csrf_token": csrf, "api_key": "fk_wrong"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert "Too many keys were refused" in limited.text
    # Blocked means blocked: a right key from the same address is not even looked at.
    right = site.client.post("/login", data={"csrf_token": csrf, "api_key": site.keys["user"]})
    assert right.status_code == 429


def test_session_cookies_are_secure_behind_a_tls_proxy(database_url: str, tmp_path: Path) -> None:
    from portability.guard import DoorPolicy
    from sts.scope import parse_cidrs

    door = DoorPolicy(trusted_proxies=parse_cidrs(["0.0.0.0/0", "::/0"]))
    # TestClient's peer is "testclient", which no network holds: only a real address in
    # trusted_proxies is believed, so the proxied case runs through an ASGI scope rewrite.

    def from_proxy(inner: ASGIApp) -> ASGIApp:
        async def app_(scope: Scope, receive: Receive, send: Send) -> None:
            await inner({**scope, "client": ("10.0.0.5", 50000)}, receive, send)

        return app_

    with open_site(database_url, tmp_path, door=door, wrap=from_proxy) as site:
        client, keys = site.client, site.keys
        form = client.get("/login", headers={"x-forwarded-proto": "https"})
        assert "secure" in form.headers["set-cookie"].lower()
        # httpx keeps a Secure cookie off plain http, as a browser would: hand it over.
        client.cookies.set("ferry_login_csrf", csrf_of(form.text))
        answer = client.post(
            "/login",
            data={"csrf_token": csrf_of(form.text), "api_key": keys["user"], "next": "/"},
            headers={"x-forwarded-proto": "https"},
        )
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower()
        plain = client.get("/login")
        assert "secure" not in plain.headers["set-cookie"].lower()


def test_sign_out(site: Site) -> None:
    csrf = login(site)
    answer = site.client.post("/logout", data={"csrf_token": csrf})
    assert "You are signed out" in answer.text
    assert site.client.get("/").status_code == 303
