"""Email: HTML and text from one set of templates, sent by SMTP or written to an outbox.

With `smtp_url` set (`smtp://user:pass@host:587`, or `smtps://…:465` for TLS from the first
byte) messages go out over SMTP: STARTTLS whenever the server offers it, and always before a
password is sent; a failed attempt is retried with backoff. Without it, each message is an
`.eml` file in the outbox directory (the embedded default): nothing is lost on a laptop.

Mail is a side effect: callers catch :class:`MailError`, log it and carry on. An export
never fails because a mail server is down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import smtplib
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from storage.files import open_private, private_dir

log = logging.getLogger("ferry.mail")


class MailError(Exception):
    """A message could not be delivered (after all retries) or the mail setup is wrong."""


@dataclass(frozen=True)
class MailSettings:
    smtp_url: str = field(default="", repr=False)  # holds the password
    sender: str = "ferry@localhost"
    outbox: str = "var/outbox"
    ca_file: str = ""  # trust this CA for STARTTLS/SMTPS (else the system's)
    timeout: float = 30.0
    attempts: int = 3
    backoff: float = 1.0  # seconds before the 2nd attempt, doubled each time after


# The dashboard's look (ferry.css: header #12263f, ink #1b1f24, accent #0b57a4), inlined
# because mail clients ignore stylesheets.
_BASE = """\
<!doctype html>
<html><head><meta charset="utf-8"><title>{{ subject }}</title>
<style>a{color:#0b57a4}</style></head>
<body style="margin:0;padding:24px;background:#f5f6f8;color:#1b1f24;
 font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;line-height:1.5">
<table role="presentation" width="100%"
 style="max-width:600px;margin:0 auto;background:#fff;border:1px solid #c9ced6;border-radius:8px">
<tr><td style="background:#12263f;color:#fff;padding:12px 24px;border-radius:8px 8px 0 0;
 font-weight:700;font-size:18px">Ferry</td></tr>
<tr><td style="padding:24px">
<h1 style="font-size:20px;margin:0 0 16px">{{ subject }}</h1>
{% block body %}{% endblock %}
<p style="font-size:12px;color:#4d5561;margin-top:24px">Request {{ request_id }}.
You receive this because you asked for your data under GDPR Article 20.</p>
</td></tr></table></body></html>
"""

_HTML = {
    "export_ready": """{% extends "base" %}{% block body %}
<p>Your export is ready.{% if files %} Sign in to Ferry to download it (until {{ expires_at }}):
{% endif %}</p>
<p><a href="{{ page_url }}"
 style="display:inline-block;background:#0b57a4;color:#fff;padding:8px 16px;border-radius:4px;
 text-decoration:none">Open your export</a></p>
{% if files %}<ul>{% for file in files %}
<li>{{ file.name }} ({{ file.size_text }})</li>{% endfor %}</ul>{% endif %}
{% if manifest %}<p>The manifest beside it lists every file with its SHA-256.</p>{% endif %}
{% if credentials %}<p>Pull your files with the credentials shown when you asked for the export
(bucket{{ 's' if credentials|length > 1 else '' }}: {{ credentials|join(', ') }}).</p>{% endif %}
<p style="font-size:12px;color:#4d5561">This mail holds no download link on purpose: the
links are made for you when you open the page signed in.</p>
{% endblock %}""",
    "export_failed": """{% extends "base" %}{% block body %}
<p>We could not finish your export: {{ error }}</p><p>Please ask again; nothing was kept.</p>
<p><a href="{{ page_url }}">See the request</a></p>
{% endblock %}""",
    "export_expiring": """{% extends "base" %}{% block body %}
<p>Your download links stop working on {{ expires_at }}. Fetch what you still need from
<a href="{{ page_url }}">your export's page</a>.</p>
{% endblock %}""",
    "transfer_finished": """{% extends "base" %}{% block body %}
<p>Your transfer to {{ destination }} has finished with status <b>{{ status }}</b>.</p>
<p>{{ summary }}</p><p><a href="{{ page_url }}">See the report</a></p>{% endblock %}""",
    "import_finished": """{% extends "base" %}{% block body %}
<p>Your import from {{ source }} has finished with status <b>{{ status }}</b>.</p>
<p>{{ summary }}</p>{% if error_line %}<p>{{ error_line }}</p>{% endif %}
<p><a href="{{ page_url }}">See the report</a></p>{% endblock %}""",
}

_TEXT = {
    "export_ready": """Your export is ready.{% if files %} Sign in to Ferry to download it
(until {{ expires_at }}):{% endif %}

{{ page_url }}
{% for file in files %}
- {{ file.name }} ({{ file.size_text }}){% endfor %}{% if manifest %}
The manifest beside it lists every file with its SHA-256.{% endif %}{% if credentials %}
Pull your files with the credentials shown when you asked for the export.{% endif %}

This mail holds no download link on purpose: the links are made for you when you open
the page signed in.
""",
    "export_failed": """We could not finish your export: {{ error }}
Please ask again.
{{ page_url }}
""",
    "export_expiring": """Your download links stop working on {{ expires_at }}.
Fetch what you still need from your export's page:
{{ page_url }}
""",
    "transfer_finished": """Your transfer to {{ destination }} has finished: {{ status }}.
{{ summary }}
{{ page_url }}
""",
    "import_finished": """Your import from {{ source }} has finished: {{ status }}.
{{ summary }}{% if error_line %}
{{ error_line }}{% endif %}
{{ page_url }}
""",
}

SUBJECTS = {
    "export_ready": "Your Ferry export is ready",
    "export_failed": "Your Ferry export failed",
    "export_expiring": "Your Ferry export links expire within 24 hours",
    "transfer_finished": "Your Ferry transfer has finished",
    "import_finished": "Your Ferry import has finished",
}

_FOOTER = "\n--\nFerry. Request {{ request_id }}. You asked for your data under GDPR Article 20.\n"

_html_env = Environment(
    loader=DictLoader({"base": _BASE, **_HTML}),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
)
_text_env = Environment(autoescape=False, undefined=StrictUndefined)  # noqa: S701 - plain text


def render(kind: str, **context: Any) -> tuple[str, str, str]:
    """(subject, text, html) for a notification kind."""
    if kind not in SUBJECTS:
        raise MailError(f"unknown notification {kind!r}")
    subject = SUBJECTS[kind]
    context = {"subject": subject, **context}
    text = _text_env.from_string(_TEXT[kind] + _FOOTER).render(**context)
    html = _html_env.get_template(kind).render(**context)
    return subject, text, html


def build_message(sender: str, to: str, subject: str, text: str, html: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "ferry")
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class Mailer:
    def __init__(
        self,
        settings: MailSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        if settings.smtp_url:
            parts = urlsplit(settings.smtp_url)
            if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
                raise MailError("mail.smtp_url must look like smtp://user:pass@host:587")

    async def send(self, to: str, subject: str, text: str, html: str) -> None:
        """Deliver one message; raises MailError once every attempt has failed."""
        message = build_message(self.settings.sender, to, subject, text, html)
        if not self.settings.smtp_url:
            await asyncio.to_thread(self._write_eml, message)
            return
        delay = self.settings.backoff
        for attempt in range(1, self.settings.attempts + 1):
            try:
                await asyncio.to_thread(self._smtp_send, message)
                return
            except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
                log.warning(
                    "mail to %s failed (attempt %d of %d): %s",
                    to,
                    attempt,
                    self.settings.attempts,
                    exc,
                )
                if attempt == self.settings.attempts:
                    raise MailError(f"could not send mail to {to}: {exc}") from exc
                await self._sleep(delay)
                delay *= 2

    def _write_eml(self, message: EmailMessage) -> None:
        outbox = Path(self.settings.outbox)
        private_dir(outbox)  # mail names people and what they asked for: owner-only
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}.eml"
        temp = outbox / f".{name}.tmp"
        with os.fdopen(open_private(temp, os.O_WRONLY | os.O_EXCL), "wb") as out:
            out.write(bytes(message))
        os.replace(temp, outbox / name)  # readers never see half a message

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file or None)
        return context

    def _smtp_send(self, message: EmailMessage) -> None:
        parts = urlsplit(self.settings.smtp_url)
        host = parts.hostname or ""
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        timeout = self.settings.timeout
        client: smtplib.SMTP
        if parts.scheme == "smtps":
            client = smtplib.SMTP_SSL(
                host, parts.port or 465, timeout=timeout, context=self._tls_context()
            )
        else:
            client = smtplib.SMTP(host, parts.port or 587, timeout=timeout)
        with client:
            client.ehlo()
            if parts.scheme == "smtp":
                if client.has_extn("starttls"):
                    client.starttls(context=self._tls_context())
                    client.ehlo()
                elif user:
                    raise MailError(
                        "the SMTP server offers no STARTTLS; refusing to send a password"
                    )
            if user and password is not None:
                client.login(user, password)
            client.send_message(message)
