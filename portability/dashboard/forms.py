"""URL-encoded form bodies: small, so read whole (capped), parsed with the standard library."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024


class BadForm(Exception):
    """A form that cannot be taken at all; answered with `status` and `title`."""

    status = 400
    title = "That form cannot be read"


class FormTooLarge(BadForm):
    status = 413
    title = "That form is too large"


class Form:
    """The fields of a posted form; every value a string, repeated names kept in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str = "") -> str:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self._pairs if key == name]

    def __contains__(self, name: object) -> bool:
        return any(key == name for key, _ in self._pairs)


async def read_form(request: Request) -> Form:
    """Parse an application/x-www-form-urlencoded body; anything else counts as empty."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    if kind != "application/x-www-form-urlencoded":
        return Form([])
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    # No field may hold NUL: PostgreSQL cannot store it, and no name, prefix or key has one.
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise BadForm("A field holds a NUL character, which no field may contain.")
    return Form(pairs)
