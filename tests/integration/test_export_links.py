"""Export links at rest and their revocation: nothing in the database or the outbox opens a
download; the owner's answers do; the owner can kill them, completed or not.

The installation is test_export_e2e's (real API and gateway on loopback, the database of
`database_url`, PostgreSQL when FERRY_TEST_DATABASE_URL is set), in a database of this
module's own, so a grep of it sees exactly what these tests caused. Downloads go through
curl against the gateway; the dashboard is driven over HTTP with its cookies and CSRF token.
"""

# ruff: noqa: F811 - `stack` is test_export_e2e's fixture, taken as an argument

from __future__ import annotations

import email
import hashlib
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db.models import PortabilityRequest
from db.urls import sqlite_path
from ferry.cli_export import export
from portability.exports.notify import Notifier
from portability.exports.worker import ExportWorker
from portability.mail import Mailer, MailSettings
from tests.integration.test_export_e2e import stack  # noqa: F401
from tests.support.export_stack import Stack, fetch, run_curl
from tests.support.ferry import http

SIGNATURE = b"X-Amz-Signature"


@pytest.fixture(scope="module")
def outbox(stack: Stack) -> Path:
    return stack.workdir / "outbox"


@pytest.fixture(scope="module")
def mailing_worker(stack: Stack, outbox: Path) -> ExportWorker:
    """The stack's worker, with mail written to the outbox as in the embedded default."""
    return ExportWorker(
        sessions=stack.sessions,
        storage=stack.storage,
        master_key=stack.master_key,
        settings=stack.settings,
        notifier=Notifier(
            stack.sessions,
            Mailer(MailSettings(outbox=str(outbox))),
            dashboard_url=stack.api_url,
        ),
    )


def build(stack: Stack, worker: ExportWorker, body: dict[str, Any], user: str = "alice") -> Any:
    status, created = stack.api("POST", "/api/portability/export", body=body, user=user)
    assert status == 202, created
    stack.loop.call(worker.run_once())
    status, done = stack.api("GET", f"/api/portability/requests/{created['id']}", user=user)
    assert status == 200 and done["status"] == "ready", done
    return done


def status_of(url: str) -> int:
    result = run_curl("-o", "/dev/null", "-w", "%{http_code}", url)
    return int(result.stdout.decode() or 0)


def refused_soon(url: str, within: float = 3.0) -> int:
    """The link's status once the gateway has seen the revocation (it trusts a row 0.5 s)."""
    deadline = time.monotonic() + within
    while True:
        status = status_of(url)
        if status != 200 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def database_bytes(database_url: str) -> bytes:
    """The whole database as a thief would copy it: the SQLite files, or a pg_dump."""
    path = sqlite_path(database_url)
    if path is not None:
        return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.fail("pg_dump is not installed (Debian: postgresql-client)")
    url = make_url(database_url).set(drivername="postgresql")
    dumped = subprocess.run(
        [pg_dump, "--data-only", url.render_as_string(hide_password=False)],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert b"COPY public.portability_requests" in dumped.stdout  # it did dump the rows
    return dumped.stdout


def links_of(answer: dict[str, Any]) -> list[str]:
    meta = answer["metadata"]
    found = [p["url"] for p in meta.get("parts") or []]
    if meta.get("manifest_url"):
        found.append(meta["manifest_url"])
    return found


def test_no_working_link_rests_in_the_database_or_the_outbox(
    stack: Stack, mailing_worker: ExportWorker, outbox: Path, database_url: str
) -> None:
    personal = build(stack, mailing_worker, {"format": "json"})
    pull = build(stack, mailing_worker, {"format": "s3"})

    # The owner's answers carry working links, and they download through the gateway.
    for done in (personal, pull):
        assert done["export_url"] and SIGNATURE.decode() in done["export_url"]
        for url in links_of(done):
            assert SIGNATURE.decode() in url
    [part] = personal["metadata"]["parts"]
    assert personal["export_url"] == part["url"]
    # A link signed now lives no longer than the export.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(part["url"]).query)
    signed_at = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ends = signed_at + timedelta(seconds=int(query["X-Amz-Expires"][0]))
    expires_at = datetime.fromisoformat(personal["expires_at"].replace("Z", "+00:00"))
    assert expires_at - timedelta(seconds=5) <= ends <= expires_at + timedelta(seconds=1)
    out = stack.workdir / "links-personal.json"
    assert fetch(part["url"], out) == 200
    assert hashlib.sha256(out.read_bytes()).hexdigest() == part["sha256"]
    manifest = stack.workdir / "links-manifest.json"
    assert fetch(pull["metadata"]["manifest_url"], manifest) == 200
    assert b'"alice-data"' in manifest.read_bytes()
    assert pull["export_url"] == pull["metadata"]["manifest_url"]
    # So does the listing.
    _, listed = stack.api("GET", "/api/portability/requests")
    shown = {r["id"]: r for r in listed["requests"]}
    assert fetch(shown[personal["id"]]["export_url"], stack.workdir / "again.json") == 200

    # What the row keeps is a reference, which the gateway refuses.
    async def stored() -> list[PortabilityRequest]:
        async with stack.sessions() as session:
            rows = await session.scalars(select(PortabilityRequest))
            return list(rows.all())

    rows = {str(r.id): r for r in stack.loop.call(stored())}
    reference = rows[personal["id"]].export_url
    assert reference and "?" not in reference and reference.startswith(stack.gateway_url)
    assert status_of(reference) == 403
    assert "url" not in (rows[personal["id"]].meta or {})["parts"][0]

    # A copy of the database opens nothing.
    dump = database_bytes(database_url)
    assert SIGNATURE not in dump
    assert b"X-Amz-Credential" not in dump

    # Nor does the outbox: raw, or decoded (quoted-printable could split the word).
    mails = sorted(outbox.glob("*.eml"))
    assert len(mails) >= 2
    for path in mails:
        raw = path.read_bytes()
        assert SIGNATURE not in raw
        message = email.message_from_bytes(raw)
        for piece in message.walk():
            payload = piece.get_payload(decode=True)
            if isinstance(payload, bytes):
                assert SIGNATURE not in payload
    pages = b""
    for path in mails:
        for piece in email.message_from_bytes(path.read_bytes()).walk():
            payload = piece.get_payload(decode=True)
            if piece.get_content_type() == "text/plain" and isinstance(payload, bytes):
                pages += payload
    for done in (personal, pull):
        assert f"{stack.api_url}/requests/{done['id']}".encode() in pages


def test_revoking_a_completed_exports_links_kills_them_at_the_gateway(
    stack: Stack, mailing_worker: ExportWorker
) -> None:
    done = build(stack, mailing_worker, {"format": "json"}, user="bob")
    rid = done["id"]
    old = done["export_url"]
    assert fetch(old, stack.workdir / "bob.json") == 200
    stack.flush_audit()
    stack.loop.call(mailing_worker.refresh_receipts())
    _, completed = stack.api("GET", f"/api/portability/requests/{rid}", user="bob")
    assert completed["status"] == "completed"  # fetched in full: cancel no longer applies
    cancel = stack.api("POST", f"/api/portability/requests/{rid}/cancel", user="bob")
    assert cancel[0] == 422
    fresh = completed["export_url"]
    assert status_of(fresh) == 200

    status, revoked = stack.api("POST", f"/api/portability/requests/{rid}/revoke-links", user="bob")
    assert status == 200, revoked
    assert revoked["status"] == "completed"
    assert revoked["metadata"]["links_revoked_at"]
    assert revoked["export_url"] is None
    assert refused_soon(old) == 403
    assert status_of(fresh) == 403

    _, after = stack.api("GET", f"/api/portability/requests/{rid}", user="bob")
    assert after["export_url"] is None
    assert all(p["url"] is None for p in after["metadata"]["parts"])
    # Revoking again changes nothing and is no error.
    again = stack.api("POST", f"/api/portability/requests/{rid}/revoke-links", user="bob")
    assert again[0] == 200
    assert again[1]["metadata"]["links_revoked_at"] == revoked["metadata"]["links_revoked_at"]

    # The sweeper deletes the files nobody can fetch any more.
    stack.loop.call(mailing_worker.sweeper.run())
    _, swept = stack.api("GET", f"/api/portability/requests/{rid}", user="bob")
    assert swept["metadata"].get("purged_at")
    assert not list(stack.storage_root.rglob(f"*{rid}*"))  # keys are never file names
    assert stack.loop.call(_stored_keys(stack, rid)) == []


async def _stored_keys(stack: Stack, rid: str) -> list[str]:
    page = await stack.storage.list(stack.settings.exports_bucket, prefix="")
    return [o.key for o in page.objects if f"/{rid}/" in o.key]


def test_revoke_links_refuses_what_has_none_yet(stack: Stack) -> None:
    status, pending = stack.api("POST", "/api/portability/export", body={"format": "json"})
    assert status == 202
    path = f"/api/portability/requests/{pending['id']}/revoke-links"
    status, body = stack.api("POST", path)
    assert status == 409 and body["error"]["code"] == "conflict"
    assert "cancel" in body["error"]["message"]
    # Someone else's request is not found, like a missing one.
    assert stack.api("POST", path, user="bob")[0] == 404
    assert stack.api("POST", "/api/portability/requests/nope/revoke-links")[0] == 404
    assert http("POST", stack.api_url + path, token=None)[0] == 401
    stack.api("POST", f"/api/portability/requests/{pending['id']}/cancel")
    status, cancelled = stack.api("POST", path)
    assert status == 200 and cancelled["status"] == "cancelled"
    assert "links_revoked_at" not in cancelled["metadata"]


def test_cli_shows_working_links_and_revokes_them(
    stack: Stack, mailing_worker: ExportWorker, database_url: str
) -> None:
    done = build(stack, mailing_worker, {"format": "json"})
    env = {
        "FERRY_DATABASE_URL": database_url,
        "FERRY_STORAGE_ROOT": str(stack.storage_root),
        "FERRY_SECURITY_MASTER_KEY_FILE": str(stack.workdir / "master.key"),
        "FERRY_GATEWAY_PUBLIC_URL": stack.gateway_url,
    }
    runner = CliRunner()
    shown = runner.invoke(export, ["status", done["id"]], env=env)
    assert shown.exit_code == 0, shown.output
    [link] = re.findall(r"https?://\S+X-Amz-Signature=\S+", shown.output)
    assert status_of(link) == 200

    revoked = runner.invoke(export, ["revoke-links", done["id"]], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert "links revoked" in revoked.output
    assert refused_soon(link) == 403
    assert refused_soon(done["export_url"]) == 403
    after = runner.invoke(export, ["status", done["id"]], env=env)
    assert "X-Amz-Signature" not in after.output and "links:   revoked" in after.output

    missing = runner.invoke(export, ["revoke-links", "not-an-id"], env=env)
    assert missing.exit_code == 1 and "not a request id" in missing.output


class Browser:
    """Just enough of one: cookies, forms, redirects followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            return str(response.read().decode())

    def post(self, path: str, form: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(form).encode()
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as response:
                return int(response.status), str(response.read().decode())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


@pytest.fixture
def browser(stack: Stack) -> Iterator[Browser]:
    browser = Browser(stack.api_url)
    login = browser.get("/login")
    status, _ = browser.post(
        "/login",
        {"csrf_token": csrf_of(login), "api_key": stack.keys["alice@example.com"], "next": "/"},
    )
    assert status == 200
    yield browser


def test_dashboard_button_revokes_the_links(
    stack: Stack, mailing_worker: ExportWorker, browser: Browser
) -> None:
    done = build(stack, mailing_worker, {"format": "json"})
    page = browser.get(f"/requests/{done['id']}")
    [link] = re.findall(r'href="([^"]*X-Amz-Signature[^"]*)" rel="noreferrer" data-download', page)
    link = link.replace("&amp;", "&")
    assert status_of(link) == 200
    assert f'action="/requests/{done["id"]}/revoke-links"' in page

    # Without the form's CSRF token nothing happens.
    refused, _ = browser.post(f"/requests/{done['id']}/revoke-links", {"csrf_token": "forged"})
    assert refused == 403
    assert status_of(link) == 200

    status, after = browser.post(
        f"/requests/{done['id']}/revoke-links", {"csrf_token": csrf_of(page)}
    )
    assert status == 200  # the request's page again, after the 303
    assert "Download links revoked" in after
    assert "X-Amz-Signature" not in after
    assert "revoke-links" not in after  # the button is gone
    assert refused_soon(link) == 403
    assert refused_soon(done["export_url"]) == 403
