"""Database URLs: what operators type is accepted, rewritten to Ferry's drivers, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from db.engine import check_url
from db.exceptions import DatabaseConfigError, DatabaseError
from db.urls import is_sqlite, redact, sqlite_path, sync_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite+aiosqlite:///var/ferry.db", "sqlite+aiosqlite:///var/ferry.db"),
        ("sqlite:///var/ferry.db", "sqlite+aiosqlite:///var/ferry.db"),
        ("sqlite+pysqlite:////srv/ferry/ferry.db", "sqlite+aiosqlite:////srv/ferry/ferry.db"),
        ("postgresql+psycopg://ferry@db:5432/ferry", "postgresql+psycopg://ferry@db:5432/ferry"),
        ("postgresql://ferry@db/ferry", "postgresql+psycopg://ferry@db/ferry"),
        ("postgres://ferry:pw@db/ferry", "postgresql+psycopg://ferry:pw@db/ferry"),
        ("postgresql+psycopg_async://ferry@db/ferry", "postgresql+psycopg://ferry@db/ferry"),
        (
            "  postgresql://ferry@db/ferry?sslmode=require ",
            "postgresql+psycopg://ferry@db/ferry?sslmode=require",
        ),
    ],
)
def test_accepted_urls_are_rewritten_to_the_async_drivers(given: str, expected: str) -> None:
    assert check_url(given) == expected


def test_the_password_survives_the_rewrite_and_is_hidden_in_logs() -> None:
    url = check_url("postgres://ferry:s%40cret@db/ferry")
    assert url == "postgresql+psycopg://ferry:s%40cret@db/ferry"
    assert "s%40cret" not in redact(url) and "***" in redact(url)


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not a url", "malformed"),
        ("postgresql://ferry:hunter2@db:notaport/ferry", "malformed"),
        ("mysql://ferry@db/ferry", "unsupported database driver 'mysql'"),
        ("postgresql+asyncpg://ferry@db/ferry", "unsupported database driver 'postgresql+asyncpg'"),
        ("postgresql+psycopg2://ferry@db/ferry", "unsupported"),
        ("http://example.com/", "unsupported"),
        ("sqlite://", "in-memory"),
        ("sqlite+aiosqlite:///:memory:", "in-memory"),
        ("sqlite+aiosqlite:///file:x?mode=memory&uri=true", "in-memory"),
    ],
)
def test_bad_urls_are_refused_with_one_line(given: str, reason: str) -> None:
    with pytest.raises(DatabaseConfigError) as caught:
        check_url(given)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message
    assert "hunter2" not in message
    assert isinstance(caught.value, DatabaseError)


def test_sync_twins_for_migrations() -> None:
    assert str(sync_url("sqlite:///var/ferry.db")) == "sqlite+pysqlite:///var/ferry.db"
    assert str(sync_url("postgres://u@h/d")) == "postgresql+psycopg://u@h/d"


def test_sqlite_helpers() -> None:
    assert is_sqlite("sqlite:///var/ferry.db")
    assert not is_sqlite("postgresql://u@h/d")
    assert sqlite_path("sqlite+aiosqlite:///var/ferry.db") == Path("var/ferry.db")
    assert sqlite_path("sqlite+aiosqlite:////abs/ferry.db") == Path("/abs/ferry.db")
    assert sqlite_path("postgresql://u@h/d") is None
