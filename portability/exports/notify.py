"""Telling users by email: export ready, failed, links expiring, transfer finished.

Each notification's outcome is kept in `metadata.notifications[kind]`: `sent_at`, or the
`attempts` so far and the `last_error`. The sweeper retries unsent ones (up to
`MAX_ATTEMPTS`), so a mail server that is down for an hour delays the mail, nothing else.

A mail carries no download link: it points at the request's page on the dashboard
(`dashboard_url` + `/requests/<id>`), where the signed-in owner gets links signed for them,
as Google Takeout's and GitHub's export mails do. A mailbox, a mail server's spool or the
outbox therefore opens no download.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import PortabilityRequest, User
from portability.mail import Mailer, MailError, render
from portability.requests import iso, update_meta
from portability.sizes import size_text

log = logging.getLogger("ferry.exports.notify")

MAX_ATTEMPTS = 5


def _context(request: PortabilityRequest, kind: str, dashboard_url: str) -> dict[str, Any]:
    meta = request.meta or {}
    files = [
        {"name": p.get("name") or "download", "size_text": size_text(p["size"])}
        for p in meta.get("parts") or []
    ]
    report = meta.get("report") or {}
    destination = report.get("destination") or "the destination"
    source = ((meta.get("options") or {}).get("source") or {}).get("bucket")
    return {
        "request_id": str(request.id),
        "page_url": f"{dashboard_url.rstrip('/')}/requests/{request.id}",
        "files": files,
        "expires_at": iso(request.expires_at) or "",
        "manifest": bool(meta.get("manifest_key")),
        "credentials": [c.get("bucket") for c in meta.get("credentials") or []],
        "error": meta.get("error") or "an unexpected error",
        "status": request.status,
        "destination": destination,
        "source": f"bucket {source}" if source else "the source",
        "error_line": meta.get("error") if request.status == "failed" else "",
        "summary": report.get("summary")
        or ", ".join(f"{k}: {v}" for k, v in report.items() if isinstance(v, int | str)),
    }


class Notifier:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        mailer: Mailer,
        *,
        dashboard_url: str = "http://127.0.0.1:8000",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.dashboard_url = dashboard_url  # [api] public_url: where the mail's link goes
        self.clock = clock

    async def send(self, request_id: uuid.UUID, kind: str) -> bool:
        """Send one notification and record the outcome; True when it went out."""
        async with self.sessions() as session:
            request = await session.get(PortabilityRequest, request_id)
            user = None if request is None else await session.get(User, request.user_id)
            if request is None or user is None:
                return False
            subject, text, html = render(kind, **_context(request, kind, self.dashboard_url))
        error = None
        try:
            await self.mailer.send(user.email, subject, text, html)
        except MailError as exc:
            error = str(exc)
            log.error("notification %s for request %s not sent: %s", kind, request_id, exc)
        async with self.sessions.begin() as session:
            request = await session.get(PortabilityRequest, request_id, with_for_update=True)
            if request is not None:
                _record(request, kind, self.clock(), error)
        return error is None

    async def notify_transfer_finished(self, request: PortabilityRequest) -> bool:
        """For the transfer worker: mail the user that a transfer or an import ended (any
        final state)."""
        kind = "import_finished" if request.request_type == "import" else "transfer_finished"
        return await self.send(request.id, kind)


def _record(request: PortabilityRequest, kind: str, now: datetime, error: str | None) -> None:
    notes = dict((request.meta or {}).get("notifications") or {})
    note = dict(notes.get(kind) or {})
    note["attempts"] = int(note.get("attempts", 0)) + 1
    note["last_attempt_at"] = iso(now)
    if error is None:
        note["sent_at"] = iso(now)
        note.pop("last_error", None)
    else:
        note["last_error"] = error
    notes[kind] = note
    update_meta(request, notifications=notes)


def pending(request: PortabilityRequest, kind: str) -> bool:
    """True if `kind` was asked for, not yet sent, and may be tried again."""
    note = ((request.meta or {}).get("notifications") or {}).get(kind)
    if note is None:
        return False
    return "sent_at" not in note and int(note.get("attempts", 0)) < MAX_ATTEMPTS


def want(request: PortabilityRequest, kind: str) -> None:
    """Mark a notification as due (the worker or sweeper sends it)."""
    notes = dict((request.meta or {}).get("notifications") or {})
    notes.setdefault(kind, {"attempts": 0})
    update_meta(request, notifications=notes)
