"""Database URLs: validation, driver rewriting, and the sync twin used by migrations.

Ferry talks to exactly two databases, each through one async driver:

- SQLite through ``aiosqlite`` (``sqlite+aiosqlite:///var/ferry.db``), the embedded default;
- PostgreSQL through psycopg 3 (``postgresql+psycopg://user@host/db``), production.

Operators write URLs by hand, so the common spellings (``sqlite:///``, ``postgresql://``,
``postgres://``) are rewritten to those drivers instead of being refused.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from db.exceptions import DatabaseConfigError

__all__ = ["check_url", "is_sqlite", "parse_url", "redact", "sqlite_path", "sync_url"]

# What a user may write (backend, driver) -> the async driver Ferry runs on. A missing driver
# means "the backend's default", which for SQLAlchemy is a sync driver, hence the rewrite.
_ASYNC_DRIVERS: dict[tuple[str, str], str] = {
    ("sqlite", ""): "sqlite+aiosqlite",
    ("sqlite", "pysqlite"): "sqlite+aiosqlite",
    ("sqlite", "aiosqlite"): "sqlite+aiosqlite",
    ("postgresql", ""): "postgresql+psycopg",
    ("postgresql", "psycopg"): "postgresql+psycopg",
    ("postgresql", "psycopg_async"): "postgresql+psycopg",
    ("postgres", ""): "postgresql+psycopg",
    ("postgres", "psycopg"): "postgresql+psycopg",
}

# The same databases through sync drivers: Alembic and the test fixtures run synchronously so
# they work from a click command and from inside a running event loop alike.
_SYNC_DRIVERS: dict[str, str] = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+psycopg": "postgresql+psycopg",
}

_EXAMPLES = "e.g. sqlite+aiosqlite:///var/ferry.db or postgresql+psycopg://user@host:5432/ferry"


def parse_url(url: str) -> sa.URL:
    """Validate ``url`` and return it as a :class:`sqlalchemy.URL` on Ferry's async driver.

    Raises :class:`DatabaseConfigError` with a one-line message; the message never repeats
    the URL's password.
    """
    if not url.strip():
        raise DatabaseConfigError(f"database URL is empty ({_EXAMPLES})")
    try:
        parsed = make_url(url.strip())
    except (sa.exc.ArgumentError, ValueError) as exc:
        # make_url's messages may quote the URL, password included: say what is wrong instead.
        raise DatabaseConfigError(
            f"database URL {_scheme_of(url)}://… is malformed ({_EXAMPLES})"
        ) from exc
    backend, _, driver = parsed.drivername.partition("+")
    target = _ASYNC_DRIVERS.get((backend.lower(), driver.lower()))
    if target is None:
        raise DatabaseConfigError(
            f"unsupported database driver {parsed.drivername!r}: "
            f"use sqlite+aiosqlite or postgresql+psycopg ({_EXAMPLES})"
        )
    parsed = parsed.set(drivername=target)
    if target.startswith("sqlite"):
        _check_sqlite(parsed)
    return parsed


def check_url(url: str) -> str:
    """Return ``url`` rewritten to Ferry's async driver, or raise :class:`DatabaseConfigError`.

    ``sqlite:///x.db`` becomes ``sqlite+aiosqlite:///x.db``; ``postgresql://`` and
    ``postgres://`` become ``postgresql+psycopg://``. Other backends and drivers
    (``mysql``, ``postgresql+asyncpg``, ...) are refused.
    """
    return parse_url(url).render_as_string(hide_password=False)


def sync_url(url: str | sa.URL) -> sa.URL:
    """The same database through a synchronous driver (for Alembic and admin connections)."""
    parsed = url if isinstance(url, sa.URL) else parse_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS[parsed.drivername])


def is_sqlite(url: str | sa.URL) -> bool:
    parsed = url if isinstance(url, sa.URL) else parse_url(url)
    return parsed.get_backend_name() == "sqlite"


def sqlite_path(url: str | sa.URL) -> Path | None:
    """The file a SQLite URL points at (None for PostgreSQL and for ``uri=true`` URLs)."""
    parsed = url if isinstance(url, sa.URL) else parse_url(url)
    if parsed.get_backend_name() != "sqlite" or _is_uri(parsed):
        return None
    assert parsed.database  # guaranteed by _check_sqlite
    return Path(parsed.database)


def redact(url: str | sa.URL) -> str:
    """A URL fit for logs and error messages: the password is masked."""
    try:
        parsed = url if isinstance(url, sa.URL) else make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return _scheme_of(str(url)) + "://…"
    return parsed.render_as_string(hide_password=True)


def _check_sqlite(parsed: sa.URL) -> None:
    database = parsed.database or ""
    # Every pooled connection to ":memory:" would see its own empty database, and migrations
    # run on a separate connection: the schema would vanish between them.
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        raise DatabaseConfigError(
            "in-memory SQLite is not supported: give a file path, "
            "e.g. sqlite+aiosqlite:///var/ferry.db"
        )


def _is_uri(parsed: sa.URL) -> bool:
    value = parsed.query.get("uri", "")
    return isinstance(value, str) and value.lower() in ("true", "1")


def _scheme_of(url: str) -> str:
    scheme, sep, _ = url.strip().partition("://")
    return scheme if sep and len(scheme) < 40 else "?"
