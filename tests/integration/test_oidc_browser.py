"""Sign-in through the provider's identity system, in a real browser.

`ferry serve` runs with `[oidc]` pointed at a real OpenID Connect provider (oidc-provider-mock
in its own process, tests/support/oidc_provider.py); Playwright drives Debian's chromium
through the whole flow: Ferry's sign-in page, "Sign in with Example ID", the provider's login
form, back to the dashboard. alice is in the `ferry-admins` group and sees the admin console;
bob is not and does not. Signing out ends the session at Ferry and at the provider. The
sign-in page is photographed at 375 and 1280 px.

Without chromium or the playwright package the tests skip, except under CI=true.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.test_dashboard_browser import browser, page, shoot
from tests.support.ferry import Ferry
from tests.support.oidc_provider import OidcProvider

__all__ = ["browser", "page"]  # the fixtures, shared with the dashboard's browser tests


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    users = [
        {"sub": "alice", "email": "alice@example.com", "name": "Alice", "groups": ["ferry-admins"]},
        {"sub": "bob", "email": "bob@example.com", "name": "Bob", "groups": ["staff"]},
    ]
    running = OidcProvider.start(tmp_path_factory.mktemp("oidc"), users)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def served(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, provider: OidcProvider
) -> Iterator[Ferry]:
    ferry = Ferry.create(
        tmp_path_factory.mktemp("oidc-dashboard"),
        database_url,
        oidc_issuer=provider.issuer,
        oidc_name="Example ID",
        oidc_client_id="ferry-dashboard",
        oidc_client_secret="s3cret",
        oidc_admin_claim="groups",
        oidc_admin_values="ferry-admins",
        oidc_api_audience="ferry-api",
    )
    for email in ("alice@example.com", "bob@example.com"):
        ferry.create_user(email)
    ferry.serve()
    try:
        yield ferry
    finally:
        ferry.stop()


def sign_in_with_provider(page: Any, served: Ferry, provider: OidcProvider, who: str) -> None:
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    page.get_by_role("link", name="Sign in with Example ID").click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + "/oauth2/authorize"))
    page.get_by_role("button", name=who, exact=True).click()
    page.wait_for_url(served.api_url + "/")


def test_the_sign_in_page_offers_the_provider_above_the_api_key(page: Any) -> None:
    page.goto("/login")
    button = page.get_by_role("link", name="Sign in with Example ID")
    key_field = page.get_by_label("API key")
    assert button.is_visible() and key_field.is_visible()
    assert button.bounding_box()["y"] < key_field.bounding_box()["y"]
    shoot(page, "login-oidc")


def test_alice_signs_in_at_the_provider_and_sees_the_admin_console(
    page: Any, served: Ferry, provider: OidcProvider
) -> None:
    sign_in_with_provider(page, served, provider, "alice")
    assert "alice@example.com" in page.locator("body").inner_text()
    page.get_by_role("link", name="Admin").click()
    page.wait_for_url(re.compile(r"/admin$"))
    assert page.get_by_role("heading", name="Admin console").is_visible()
    row = page.locator('tr[data-user="alice@example.com"]')
    assert "OpenID Connect" in row.inner_text()
    shoot(page, "admin-sign-ins")
    # Sign-out ends the session here and at the provider, which sends the browser back.
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(re.compile(re.escape(provider.issuer) + "/oauth2/end_session"))
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(re.compile(r"/login\?signed_out=1$"))
    assert "You are signed out." in page.locator("body").inner_text()
    page.goto("/admin")
    assert "/login" in page.url


def test_bob_without_the_group_does_not_see_the_admin_console(
    page: Any, served: Ferry, provider: OidcProvider
) -> None:
    sign_in_with_provider(page, served, provider, "bob")
    assert "bob@example.com" in page.locator("body").inner_text()
    assert page.get_by_role("link", name="Admin").count() == 0
    response = page.goto("/admin")
    assert response is not None and response.status == 403
    assert "Admins only" in page.locator("body").inner_text()
