"""Templates and the small formatting helpers the pages share."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from portability.sizes import size_text

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")

# Pages carry secrets (a fresh credential) and session state: never cache, never frame.
SECURITY_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


NONE = "\u2013"  # an en dash for "no value"


def human_bytes(value: int | float | None) -> str:
    return NONE if value is None else size_text(value)


def parse_time(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def when(value: str | datetime | None) -> str:
    moment = parse_time(value)
    return NONE if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def countdown(value: str | datetime | None, now: datetime) -> str:
    """'in 6 d 23 h' or 'expired'."""
    moment = parse_time(value)
    if moment is None:
        return NONE
    left = (moment - now).total_seconds()
    return "expired" if left <= 0 else "in " + duration(left)


def percent(done: int | float | None, total: int | float | None) -> int:
    if not total:
        return 0
    return max(0, min(100, int(100 * float(done or 0) / float(total))))


class Pages:
    """A Jinja2 environment over the package's templates (autoescaped)."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=jinja2.select_autoescape(default=True),
            undefined=jinja2.ChainableUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(bytes=human_bytes, when=when, duration=duration, percent=percent)
        self.env.globals.update(countdown=countdown)

    def render(
        self,
        name: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        form_origins: tuple[str, ...] = (),
    ) -> HTMLResponse:
        """`form_origins`: where a form's answer may redirect besides 'self' (CSP form-action
        covers redirects too): the identity provider, for sign-out there."""
        html = self.env.get_template(name).render(**context)
        headers = SECURITY_HEADERS
        if form_origins:
            csp = SECURITY_HEADERS["content-security-policy"].replace(
                "form-action 'self'", "form-action 'self' " + " ".join(form_origins)
            )
            headers = {**SECURITY_HEADERS, "content-security-policy": csp}
        return HTMLResponse(html, status_code=status, headers=headers)
