"""Dashboard pages without a browser: the routes composed on their own, a real database.

Starlette's TestClient drives `dashboard_routes(...)` mounted in a bare app with a clock the
test moves, so session expiry is exact. What is checked is what a visitor would see: cookie
flags, the pages for a wrong key, an expired session, a missing CSRF token and a foreign
request, and that no page ever shows a trace.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from db.models import ApiKey, AuditLog, User
from portability.accounts import create_user, hash_api_key
from portability.buckets import create_bucket
from portability.credentials import GatewayAddress
from portability.dashboard import dashboard_routes
from storage.local import LocalStorage

MASTER_KEY = bytes(range(32))
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    client: TestClient
    clock: Clock
    keys: dict[str, str]
    database_url: str


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _setup(database_url: str, root: Path, tag: str) -> dict[str, str]:
    engine = create_engine(database_url)
    storage = LocalStorage(root)
    keys = {}
    try:
        async with session_factory(engine).begin() as session:
            for name, admin in (("user", False), ("admin", True), ("other", False)):
                _, keys[name] = await create_user(
                    session, f"{name}-{tag}@example.com", is_admin=admin
                )
            bucket = await create_bucket(
                session, storage, f"pages-{tag}", owner_email=f"user-{tag}@example.com"
            )
            for key in ("docs/a.txt", "docs/b.txt", "photos/c.jpg"):
                await storage.put(bucket.backend_bucket, key, _one(b"hello"), size=5)
    finally:
        await engine.dispose()
        await storage.close()
    return keys


@pytest.fixture
def site(database_url: str, tmp_path: Path) -> Iterator[Site]:
    tag = uuid.uuid4().hex[:8]
    keys = asyncio.run(_setup(database_url, tmp_path / "storage", tag))
    keys["bucket"] = f"pages-{tag}"
    clock = Clock()
    engine = create_engine(database_url)
    app = Starlette(
        routes=dashboard_routes(
            session_factory(engine),
            LocalStorage(tmp_path / "storage"),
            MASTER_KEY,
            GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
            session_max_age=3600,
            clock=clock,
        )
    )
    with TestClient(app, follow_redirects=False) as client:
        yield Site(client, clock, keys, database_url)
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def login(site: Site, who: str = "user") -> str:
    """Sign in; returns the session's CSRF token (from the overview page)."""
    form = site.client.get("/login")
    answer = site.client.post(
        "/login", data={"csrf_token": csrf_of(form.text), "api_key": site.keys[who], "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(site.client.get("/").text)


def assert_clean(html: str) -> None:
    assert "Traceback" not in html and 'File "' not in html


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


def test_issue_shows_the_secret_once_and_lists_folders(site: Site) -> None:
    csrf = login(site)
    page = site.client.get("/credentials").text
    assert re.search(r"<code>docs/</code> <span class=\"help\">2 objects, 10 B", page)
    answer = site.client.post(
        "/credentials",
        data={
            "csrf_token": csrf,
            "bucket": site.keys["bucket"],
            f"prefix:{site.keys['bucket']}": "docs/",
            "ttl_seconds": "900",
            "token_free": "on",
        },
    )
    assert answer.status_code == 201
    assert "rclone copy" in answer.text and "aws configure set" in answer.text
    assert "s5cmd" in answer.text
    secret = re.search(r'id="secret-1" class="copyable">([^<]+)<', answer.text)
    assert secret
    listing = site.client.get("/credentials").text
    assert secret.group(1) not in listing
    assert "token-free" in listing


def test_bad_input_is_shown_beside_the_form(site: Site) -> None:
    csrf = login(site)
    answer = site.client.post(
        "/credentials",
        data={"csrf_token": csrf, "bucket": site.keys["bucket"], "allowed_cidrs": "not-a-net"},
    )
    assert answer.status_code == 422
    assert 'class="error" role="alert"' in answer.text
    assert_clean(answer.text)


def test_a_nul_character_in_a_form_is_refused_not_a_server_error(site: Site) -> None:
    # PostgreSQL cannot store NUL in text: reaching the database it was a 500.
    form = site.client.get("/login")
    answer = site.client.post(
        "/login", data={"csrf_token": csrf_of(form.text), "api_key": "fry_\x00", "next": "/"}
    )
    assert answer.status_code == 400
    csrf = login(site)
    for field in ("bucket", f"prefix:{site.keys['bucket']}", "allowed_cidrs"):
        data = {"csrf_token": csrf, "bucket": site.keys["bucket"], field: "docs\x00/"}
        answer = site.client.post("/credentials", data=data)
        assert answer.status_code == 400, (field, answer.status_code)
        assert "NUL character" in answer.text
        assert_clean(answer.text)


def test_someone_elses_request_is_not_found(site: Site) -> None:
    login(site)
    answer = site.client.get(f"/requests/{uuid.uuid4()}")
    assert answer.status_code == 404
    assert "There is no such request" in answer.text


def test_admin_pages_are_for_admins(site: Site) -> None:
    login(site)
    answer = site.client.get("/admin")
    assert answer.status_code == 403
    assert "Admins only" in answer.text


def test_the_admin_console_has_a_plain_title_and_one_user_list(site: Site) -> None:
    login(site, "admin")
    page = site.client.get("/admin").text
    assert "<title>Admin · Ferry</title>" in page
    assert page.count('id="users-heading"') == 1


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

    tag = uuid.uuid4().hex[:8]
    keys = asyncio.run(_setup(database_url, tmp_path / "storage", tag))
    engine = create_engine(database_url)
    door = DoorPolicy(trusted_proxies=parse_cidrs(["0.0.0.0/0", "::/0"]))
    app = Starlette(
        routes=dashboard_routes(
            session_factory(engine),
            LocalStorage(tmp_path / "storage"),
            MASTER_KEY,
            GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
            door=door,
        )
    )
    # TestClient's peer is "testclient", which no network holds: only a real address in
    # trusted_proxies is believed, so the proxied case runs through an ASGI scope rewrite.

    def from_proxy(inner: Starlette) -> object:
        async def app_(scope: dict[str, object], receive: object, send: object) -> None:
            scope = {**scope, "client": ("10.0.0.5", 50000)}
            await inner(scope, receive, send)  # type: ignore[arg-type]

        return app_

    with TestClient(from_proxy(app), follow_redirects=False) as client:  # type: ignore[arg-type]
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
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def test_sign_out(site: Site) -> None:
    csrf = login(site)
    answer = site.client.post("/logout", data={"csrf_token": csrf})
    assert "You are signed out" in answer.text
    assert site.client.get("/").status_code == 303


def test_connection_test_without_javascript(site: Site) -> None:
    csrf = login(site)
    answer = site.client.post(
        "/requests/test-destination",
        data={
            "csrf_token": csrf,
            "kind": "transfer",
            "endpoint_url": "http://127.0.0.1:1",
            "dest_bucket": "target",
            "access_key_id": "AKID",
            "secret_access_key": "SECRET-NOT-ECHOED",
        },
    )
    assert answer.status_code == 422
    assert "destination address 127.0.0.1 is not allowed" in answer.text
    assert "SECRET-NOT-ECHOED" not in answer.text
    missing = site.client.post(
        "/requests/test-destination",
        data={"csrf_token": csrf, "kind": "transfer"},
        headers={"accept": "application/json"},
    )
    assert missing.json() == {
        "ok": False,
        "message": "destination.endpoint_url is required (a string)",
    }


def test_audit_search_pages_by_user_and_time(site: Site) -> None:
    email = f"other-{site.keys['bucket'].removeprefix('pages-')}@example.com"

    async def add_rows() -> None:
        engine = create_engine(site.database_url)
        async with session_factory(engine).begin() as session:
            user = await session.scalar(select(User).where(User.email == email))
            assert user is not None
            for i in range(60):
                session.add(
                    AuditLog(
                        created_at=START + timedelta(minutes=i),
                        user_id=user.id,
                        actor="gateway",
                        action="GetObject",
                        bucket="b",
                        key=f"k{i:02d}",
                        status=200,
                    )
                )
        await engine.dispose()

    site.client.portal.call(add_rows)  # type: ignore[union-attr]
    login(site, "admin")
    first = site.client.get("/admin/audit", params={"user": email})
    assert first.status_code == 200, first.text
    assert first.text.count('data-label="Action">GetObject') == 50
    assert "k59" in first.text and "k09" not in first.text
    older = re.search(r'href="(/admin/audit\?[^"]+)">Older entries', first.text)
    assert older
    second = site.client.get(older.group(1).replace("&amp;", "&"))
    assert second.text.count('data-label="Action">GetObject') == 10
    assert "k09" in second.text and "Older entries" not in second.text
    window = site.client.get(
        "/admin/audit",
        params={
            "user": email,
            "since": "2026-11-27T10:10",
            "until": "2026-11-27T10:15",
        },
    )
    assert window.text.count('data-label="Action">GetObject') == 5
    bad = site.client.get("/admin/audit", params={"since": "yesterday"})
    assert bad.status_code == 422 and "not a date and time" in bad.text


def test_requests_from_the_new_request_form(site: Site) -> None:
    csrf = login(site)
    exported = site.client.post("/requests/new", data={"csrf_token": csrf, "kind": "json"})
    assert exported.status_code == 303
    location = exported.headers["location"]
    page = site.client.get(location)
    assert "Personal data (JSON)" in page.text and "pending" in page.text
    state = site.client.get(location + "/status.json").json()
    assert state["status"] == "pending" and state["active"] is True
    cancelled = site.client.post(location + "/cancel", data={"csrf_token": csrf})
    assert cancelled.status_code == 303
    assert site.client.get(location + "/status.json").json()["status"] == "cancelled"
    pull = site.client.post(
        "/requests/new", data={"csrf_token": csrf, "kind": "s3", "token_free": "on"}
    )
    assert pull.status_code == 201, pull.text
    assert "Copy the secret now" in pull.text and "SESSION_TOKEN" not in pull.text
    overview = site.client.get("/").text
    assert overview.count('class="panel request"') == 2


def test_an_unexpected_failure_is_an_apology_not_a_trace(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    login(site)

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(LocalStorage, "list", broken)
    answer = site.client.get("/credentials")
    assert answer.status_code == 500
    assert "Something went wrong" in answer.text
    assert "disk on fire" not in answer.text and "RuntimeError" not in answer.text


@pytest.mark.parametrize("before", ["²", "9" * 40, "-1", "1e3"])
def test_a_bad_audit_cursor_is_explained_not_a_server_error(site: Site, before: str) -> None:
    form = site.client.get("/login")
    site.client.post(
        "/login",
        data={"csrf_token": csrf_of(form.text), "api_key": site.keys["admin"], "next": "/"},
    )
    answer = site.client.get("/admin/audit", params={"before": before})
    assert answer.status_code == 422
    assert "must be an audit row number" in answer.text
    assert_clean(answer.text)


def test_the_webhooks_page_adds_shows_and_removes_an_endpoint(
    database_url: str, tmp_path: Path
) -> None:
    from tests.support.egress import LOOPBACK

    tag = uuid.uuid4().hex[:8]
    keys = asyncio.run(_setup(database_url, tmp_path / "storage", tag))
    engine = create_engine(database_url)
    app = Starlette(
        routes=dashboard_routes(
            session_factory(engine),
            LocalStorage(tmp_path / "storage"),
            MASTER_KEY,
            GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
            egress=LOOPBACK,
        )
    )
    with TestClient(app, follow_redirects=False) as client:
        form = client.get("/login")
        client.post(
            "/login", data={"csrf_token": csrf_of(form.text), "api_key": keys["user"], "next": "/"}
        )
        page = client.get("/webhooks")
        assert page.status_code == 200 and "Add an endpoint" in page.text
        csrf = csrf_of(page.text)
        refused = client.post(
            "/webhooks", data={"csrf_token": csrf, "url": "http://169.254.169.254/hook"}
        )
        assert refused.status_code == 422
        assert "169.254.169.254 is not allowed" in refused.text
        added = client.post(
            "/webhooks",
            data={"csrf_token": csrf, "url": "http://127.0.0.1:9/hook", "events": "request.ready"},
        )
        assert added.status_code == 201
        assert "whsec_" in added.text  # the secret, shown once
        again = client.get("/webhooks")
        assert "http://127.0.0.1:9/hook" in again.text and "whsec_" not in again.text
        hook_id = re.search(r'action="/webhooks/([0-9a-f-]+)/delete"', again.text)
        assert hook_id
        gone = client.post(f"/webhooks/{hook_id.group(1)}/delete", data={"csrf_token": csrf})
        assert gone.status_code == 303
        assert "None yet." in client.get("/webhooks").text
        assert_clean(refused.text + added.text)
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def test_the_import_form_refuses_what_the_egress_policy_refuses(site: Site) -> None:
    csrf = login(site)
    form = site.client.get("/imports/new")
    assert form.status_code == 200 and "Import from another provider" in form.text
    handoff = {
        "format": "ferry-handoff",
        "version": 1,
        "endpoint_url": "http://127.0.0.1:1",
        "region": "us-east-1",
        "bucket": "photos",
        "prefixes": [""],
        "access_key_id": "FKIA",
        "secret_access_key": "SECRET-NOT-ECHOED",
        "session_token": None,
        "expires_at": "2030-01-01T00:00:00Z",
        "manifest_url": None,
    }
    answer = site.client.post(
        "/imports/new",
        data={
            "csrf_token": csrf,
            "handoff": json.dumps(handoff),
            "target_bucket": site.keys["bucket"],
        },
    )
    assert answer.status_code == 422
    assert "SECRET-NOT-ECHOED" not in answer.text and "FKIA" not in answer.text
    assert "127.0.0.1 is not allowed" in answer.text
    tested = site.client.post(
        "/imports/test-source",
        data={"csrf_token": csrf, "handoff": json.dumps(handoff)},
        headers={"accept": "application/json"},
    )
    assert tested.json()["ok"] is False and "127.0.0.1 is not allowed" in tested.json()["message"]
    garbled = site.client.post(
        "/imports/test-source",
        data={"csrf_token": csrf, "handoff": "{not json"},
        headers={"accept": "application/json"},
    )
    assert garbled.json() == {
        "ok": False,
        "message": "The hand-off document is not JSON: paste the whole file.",
    }


def test_issued_pull_credentials_offer_their_handoff_document(site: Site) -> None:
    csrf = login(site)
    pull = site.client.post(
        "/requests/new", data={"csrf_token": csrf, "kind": "s3", "token_free": "on"}
    )
    assert pull.status_code == 201, pull.text
    assert "Download the hand-off document" in pull.text
    assert "a link to the manifest of your files" in pull.text
