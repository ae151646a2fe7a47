"""Export mail through a real SMTP server (aiosmtpd on loopback, STARTTLS and AUTH).

The "ready" mail links the request's page on the dashboard (`[api] public_url` + the page's
path) and names the files, but carries no presigned URL: the signed-in owner gets the links
there. A mail server that refuses or is down does not fail the export: the attempt is
recorded, and the sweeper sends the mail once the server is back.
"""

# ruff: noqa: F811 - `stack` is test_export_e2e's fixture, taken as an argument

from __future__ import annotations

import datetime as dt
import email
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from portability.exports.notify import Notifier
from portability.exports.worker import ExportWorker
from portability.mail import Mailer, MailSettings
from tests.integration.test_export_e2e import stack  # noqa: F401 - the fixture
from tests.support.export_stack import Stack
from tests.support.ferry import free_port
from tests.support.tls import self_signed

USER, PASSWORD = "ferry", "s3cret pass"
DASHBOARD = "https://ferry.example.net"  # [api] public_url, as the mail's link must show it


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    refuse: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse:
            return "451 4.3.0 try again later"
        content = envelope.content
        assert isinstance(content, bytes)
        self.messages.append(email.message_from_bytes(content))
        return "250 OK"


@dataclass
class SmtpServer:
    inbox: Inbox
    port: int
    ca_file: Path

    def mailer(self, **overrides: Any) -> Mailer:
        url = f"smtp://{USER}:{PASSWORD.replace(' ', '%20')}@127.0.0.1:{self.port}"
        options: dict[str, Any] = {
            "smtp_url": url,
            "sender": "ferry@example.com",
            "ca_file": str(self.ca_file),
            "attempts": 2,
            "backoff": 0.05,
            "timeout": 5,
        }
        return Mailer(MailSettings(**{**options, **overrides}))


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    cert, key = self_signed(tmp_path_factory.mktemp("smtp"), "smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=_authenticate,
    )
    controller.start()
    yield SmtpServer(inbox, port, cert)
    controller.stop()


def _worker(stack: Stack, mailer: Mailer) -> ExportWorker:
    return ExportWorker(
        sessions=stack.sessions,
        storage=stack.storage,
        master_key=stack.master_key,
        settings=stack.settings,
        notifier=Notifier(stack.sessions, mailer, dashboard_url=DASHBOARD),
    )


def _texts(message: Message) -> tuple[str, str]:
    plain = html = ""
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_type() == "text/plain":
            plain = payload.decode()
        elif part.get_content_type() == "text/html":
            html = payload.decode()
    return plain, html


def test_ready_mail_links_the_dashboard_page_not_the_files(stack: Stack, smtp: SmtpServer) -> None:
    worker = _worker(stack, smtp.mailer())
    status, created = stack.api(
        "POST", "/api/portability/export", body={"format": "archive", "archive_format": "zip"}
    )
    assert status == 202
    before = len(smtp.inbox.messages)
    stack.loop.call(worker.run_once())
    _, done = stack.api("GET", f"/api/portability/requests/{created['id']}")
    assert done["status"] == "ready"
    page = f"{DASHBOARD}/requests/{created['id']}"
    # The demo's own export, built without a mailer, is mailed by this pass too: take ours.
    about = [m for m in smtp.inbox.messages[before:] if page in m.as_string()]
    assert len(about) == 1
    message = about[0]
    assert message["To"] == "alice@example.com"
    assert "ready" in message["Subject"]
    plain, html = _texts(message)
    assert page in plain
    assert f'href="{page}"' in html
    raw = message.as_string()
    assert "X-Amz-Signature" not in raw and "X-Amz-Credential" not in raw
    assert stack.gateway_url not in raw
    for part in done["metadata"]["parts"]:
        assert part["url"]  # the owner's answer has working links ...
        assert part["url"] not in raw  # ... the mail none of them
        assert part["name"] in plain
    assert "sent_at" in done["metadata"]["notifications"]["export_ready"]


def test_failing_mail_server_does_not_fail_the_export(stack: Stack, smtp: SmtpServer) -> None:
    smtp.inbox.refuse = True
    try:
        worker = _worker(stack, smtp.mailer())
        status, created = stack.api("POST", "/api/portability/export", body={"format": "json"})
        assert status == 202
        stack.loop.call(worker.run_once())
    finally:
        smtp.inbox.refuse = False
    _, done = stack.api("GET", f"/api/portability/requests/{created['id']}")
    assert done["status"] == "ready"  # the export stands
    note = done["metadata"]["notifications"]["export_ready"]
    assert note["attempts"] == 1 and "sent_at" not in note and "451" in note["last_error"]

    # A server that is not even listening: the same.
    dead = _worker(stack, smtp.mailer(smtp_url=f"smtp://127.0.0.1:{free_port()}"))
    status, other = stack.api(
        "POST", "/api/portability/export", body={"format": "json"}, user="bob"
    )
    assert status == 202
    stack.loop.call(dead.run_once())
    _, bobs = stack.api("GET", f"/api/portability/requests/{other['id']}", user="bob")
    assert bobs["status"] == "ready"
    assert "last_error" in bobs["metadata"]["notifications"]["export_ready"]

    # Once the server is back, the sweeper's retry (after its backoff) delivers the mail.
    later = _worker(stack, smtp.mailer())
    later.clock = later.sweeper.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    before = len(smtp.inbox.messages)
    stack.loop.call(later.sweeper.run())
    _, done = stack.api("GET", f"/api/portability/requests/{created['id']}")
    assert "sent_at" in done["metadata"]["notifications"]["export_ready"]
    assert len(smtp.inbox.messages) > before


def test_expiring_mail_and_outbox(stack: Stack, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    worker = _worker(stack, Mailer(MailSettings(outbox=str(outbox))))
    status, created = stack.api("POST", "/api/portability/export", body={"format": "json"})
    assert status == 202
    stack.loop.call(worker.run_once())
    # 23 hours before expiry the sweeper warns, once
    worker.sweeper.clock = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=6, hours=1)
    stack.loop.call(worker.sweeper.run())
    stack.loop.call(worker.sweeper.run())
    mine = [
        email.message_from_bytes(f.read_bytes())
        for f in sorted(outbox.glob("*.eml"))
        if created["id"].encode() in f.read_bytes()
    ]
    subjects = [m["Subject"] for m in mine]
    assert subjects.count("Your Ferry export links expire within 24 hours") == 1
    for message in mine:
        plain, _ = _texts(message)
        assert f"{DASHBOARD}/requests/{created['id']}" in plain
        assert "X-Amz-Signature" not in message.as_string()
    assert "Your Ferry export is ready" in subjects
    _, done = stack.api("GET", f"/api/portability/requests/{created['id']}")
    assert "sent_at" in done["metadata"]["notifications"]["export_expiring"]
    assert uuid.UUID(done["id"])
