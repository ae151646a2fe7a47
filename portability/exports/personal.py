"""The personal-data document (GDPR Art. 20): one JSON object, streamed row by row.

    {"format": "ferry-personal-data", "version": 1, "generated_at": "...",
     "subject": {...}, "api_keys": [...], "usage": [...], "billing": [...],
     "audit_logs": [...]}

Each section's rows come from its source (sources.py: Ferry's tables by default, or the
provider's own records) as an async iterator, and each row is encoded on its own with
orjson, so memory does not grow with the number of rows: a user with a million audit events
costs the same as one with ten. API keys appear masked (prefix and last four characters):
the document must be safe to hand to anyone the user chooses. The schema is
`schema/personal-data.schema.json`, shipped in the package.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import User
from portability.exports.ferry_source import FerryTables
from portability.exports.sources import PersonalDataSources, SourceFailed, Subject

FORMAT = "ferry-personal-data"
VERSION = 1
SCHEMA_FILE = "personal-data.schema.json"
LIST_SECTIONS = ("api_keys", "usage", "billing", "audit_logs")
_COUNT_EVERY = 2000
_FLUSH_AT = 256 * 1024
_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC

log = logging.getLogger("ferry.exports.personal")


def schema() -> dict[str, Any]:
    """The shipped JSON Schema of the document."""
    text = resources.files("portability.exports").joinpath("schema", SCHEMA_FILE).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def fields(section: str) -> tuple[str, ...]:
    """The schema's fields of one section's rows (of the subject, for "profile")."""
    properties = schema()["properties"]
    if section == "profile":
        return tuple(properties["subject"]["required"])
    return tuple(properties[section]["items"]["required"])


async def personal_data(
    sessions: async_sessionmaker[AsyncSession],
    user_id: uuid.UUID,
    *,
    now: datetime,
    on_rows: Callable[[int], None] | None = None,
    sources: PersonalDataSources | None = None,
) -> AsyncIterator[bytes]:
    """The document as chunks of UTF-8 JSON of about 256 KiB.

    A section whose source fails raises SourceFailed (an ExportFailed naming the section)
    before the document is complete; the caller aborts its upload.
    """
    sources = sources or PersonalDataSources(FerryTables(sessions))
    external = sources.external()
    async with sessions() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise LookupError(f"no user {user_id}")
        subject = Subject(user.id, user.email)
        profile: dict[str, Any] = {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "is_admin": user.is_admin,
            "created_at": user.created_at,
        }
    if "profile" in external:
        async for row in _guarded("profile", sources["profile"].rows("profile", subject)):
            # The provider's record of the person; the id stays Ferry's (the document's key).
            found = conform("profile", row)
            profile.update({k: v for k, v in found.items() if k != "id"})
            break
    head = {"format": FORMAT, "version": VERSION, "generated_at": now, "subject": profile}
    buffer = bytearray(orjson.dumps(head, option=_OPTIONS)[:-1])  # drop the closing brace
    for name in LIST_SECTIONS:
        buffer += b',"' + name.encode() + b'":['
        rows = sources[name].rows(name, subject)
        if name in external:
            rows = _guarded(name, rows)
        count = 0
        async for row in rows:
            if count:
                buffer += b","
            count += 1
            buffer += orjson.dumps(conform(name, row) if name in external else row, option=_OPTIONS)
            if on_rows is not None and count % _COUNT_EVERY == 0:
                on_rows(_COUNT_EVERY)
            if len(buffer) >= _FLUSH_AT:
                yield bytes(buffer)
                buffer.clear()
        if on_rows is not None and count % _COUNT_EVERY:
            on_rows(count % _COUNT_EVERY)
        buffer += b"]"
    buffer += b"}\n"
    yield bytes(buffer)


async def _guarded(
    section: str, rows: AsyncIterator[Mapping[str, Any]]
) -> AsyncIterator[Mapping[str, Any]]:
    """A source's rows, with whatever it raises turned into SourceFailed for `section`."""
    iterator = aiter(rows)
    while True:
        try:
            row = await anext(iterator)
        except StopAsyncIteration:
            return
        except SourceFailed:
            raise
        except Exception as exc:
            log.error("personal data: the %s source failed", section, exc_info=exc)
            raise SourceFailed(section, f"{type(exc).__name__} in its source") from None
        yield row


def _shape(section: str) -> dict[str, Any]:
    properties = schema()["properties"]
    shape: dict[str, Any] = (
        properties["subject"] if section == "profile" else properties[section]["items"]
    )
    return shape["properties"]  # type: ignore[no-any-return]


@cache
def _booleans(section: str) -> tuple[str, ...]:
    return tuple(k for k, v in _shape(section).items() if v.get("type") == "boolean")


@cache
def _timestamps(section: str) -> tuple[str, ...]:
    return tuple(k for k, v in _shape(section).items() if "timestamp" in v.get("$ref", ""))


def conform(section: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """A row from outside Ferry in the schema's shape: its fields only, dates as timestamps,
    whole decimals as integers, and API keys masked whatever the source handed over."""
    missing = [name for name in fields(section) if name not in row]
    if missing:
        raise SourceFailed(section, f"its rows lack {', '.join(missing)}")
    shaped = {name: _plain(row[name]) for name in fields(section)}
    for name in _booleans(section):
        if shaped[name] in (0, 1):  # SQLite and some schemas keep flags as integers
            shaped[name] = bool(shaped[name])
    for name in _timestamps(section):
        if isinstance(shaped[name], str):  # SQLite hands dates and times over as text
            shaped[name] = _timestamp(section, name, shaped[name])
    if section == "api_keys" and isinstance(shaped["key"], str) and "…" not in shaped["key"]:
        key = shaped["key"]
        shaped["key"] = f"{key[:8]}…{key[-4:]}" if len(key) > 12 else "*…****"
    return shaped


def _timestamp(section: str, name: str, text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SourceFailed(section, f"its {name} {text[:40]!r} is not a date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value
