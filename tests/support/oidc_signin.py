"""Ferry's API app signing in through a real OpenID Connect provider: the provider's people
and their Ferry accounts, the OIDC settings, and the app in starlette's TestClient.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwk
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from portability.accounts import create_user
from portability.api import build_api_app
from portability.credentials import GatewayAddress
from portability.guard import DoorPolicy, FailureLimiter
from portability.oidc.provider import OidcClient
from portability.oidc.settings import OidcSettings
from storage.local import LocalStorage
from tests.support.oidc_provider import OidcProvider

MASTER_KEY = bytes(range(32))
CLIENT_ID = "ferry-dashboard"
API_AUDIENCE = "ferry-api"


@dataclass
class People:
    tag: str

    def email(self, who: str) -> str:
        return f"{who}-{self.tag}@example.com"


def settings(provider: OidcProvider, **changes: Any) -> OidcSettings:
    values: dict[str, Any] = {
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "client_secret": "s3cret",
        "name": "Example ID",
        "admin_claim": "groups",
        "admin_values": ("ferry-admins",),
        "api_audience": API_AUDIENCE,
    }
    values.update(changes)
    return OidcSettings(**values)


def ferry_app(
    database_url: str, root: Path, oidc: OidcClient, limiter: FailureLimiter, *, https: bool
) -> Any:
    engine = create_engine(database_url)
    app = build_api_app(
        engine=engine,
        sessions=session_factory(engine),
        storage=LocalStorage(root),
        master_key=MASTER_KEY,
        endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
        door=DoorPolicy(oidc=oidc, limiter=limiter, public_url_is_https=https),
    )
    return app, engine


def site_client(
    database_url: str, root: Path, oidc: OidcClient, *, https: bool = False
) -> Iterator[TestClient]:
    limiter = FailureLimiter(failures=3, window=60)
    app, engine = ferry_app(database_url, root, oidc, limiter, https=https)
    with TestClient(app, follow_redirects=False) as client:
        yield client
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def provider_keys(provider: OidcProvider) -> jwk.KeySet:
    jwks = httpx.get(provider.discovery()["jwks_uri"]).json()
    return jwk.KeySet.import_key_set(jwks)


@contextmanager
def running_provider(workdir: Path, people: People) -> Iterator[OidcProvider]:
    """The provider with alice (an admin by her group), bob, mallory and eve (unverified)."""
    users = [
        {"sub": "alice", "email": people.email("alice"), "groups": ["staff", "ferry-admins"]},
        {"sub": "bob", "email": people.email("bob"), "groups": ["staff"]},
        {"sub": "mallory", "email": people.email("mallory")},
        {"sub": "eve", "email": people.email("eve"), "email_verified": False},
    ]
    running = OidcProvider.start(workdir, users, api_audience=API_AUDIENCE)
    try:
        yield running
    finally:
        running.stop()


async def create_accounts(database_url: str, people: People) -> dict[str, str]:
    """alice and bob have Ferry accounts (bob an admin in Ferry's own table); mallory not."""
    engine = create_engine(database_url)
    keys = {}
    try:
        async with session_factory(engine).begin() as db:
            for who, admin in (("alice", False), ("bob", True), ("eve", False)):
                _, keys[who] = await create_user(db, people.email(who), is_admin=admin)
    finally:
        await engine.dispose()
    return keys


def code_flow_tokens(
    provider: OidcProvider,
    client_id: str,
    sub: str,
    *,
    redirect: str,
    nonce: str = "",
    resource: str = "",
) -> httpx.Response:
    """The token endpoint's answer once `sub` has signed in at the provider for `client_id`
    (the authorization-code flow, the browser's part played with httpx)."""
    document = provider.discovery()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "scope": "openid email",
        "state": "s",
    }
    if nonce:
        params["nonce"] = nonce
    authorize = httpx.post(
        document["authorization_endpoint"], params=params, data={"sub": sub}, follow_redirects=False
    )
    code = parse_qs(urlsplit(authorize.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect,
        "client_id": client_id,
        "client_secret": "x",
    }
    if resource:
        form["resource"] = resource
    return httpx.post(document["token_endpoint"], data=form)
