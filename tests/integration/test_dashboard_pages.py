"""Dashboard pages without a browser: the routes composed on their own, a real database.

Starlette's TestClient drives `dashboard_routes(...)` mounted in a bare app
(tests/support/dashboard_site.py). What is checked is what a visitor would see on the pages
behind the sign-in: forms and their refusals, folders, audit search, webhooks, imports, and
that no page ever shows a trace. Sign-in and sessions are in test_dashboard_sign_in.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import create_engine, session_factory
from db.models import AuditLog, User
from storage.local import LocalStorage
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

    with open_site(database_url, tmp_path, egress=LOOPBACK) as site:
        client = site.client
        login(site)
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
