"""Engines: SQLite connection settings, sessions, health checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from db.engine import create_engine, ping, session_factory
from db.exceptions import DatabaseUnavailableError


async def test_sqlite_connections_are_configured(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/new/dir/ferry.db")
    try:
        assert engine.url.drivername == "sqlite+aiosqlite"
        async with engine.connect() as connection:
            assert await connection.scalar(sa.text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(sa.text("PRAGMA journal_mode")) == "wal"
            assert await connection.scalar(sa.text("PRAGMA busy_timeout")) == 30_000
        assert (tmp_path / "new" / "dir" / "ferry.db").is_file()
        await ping(engine)
    finally:
        await engine.dispose()


async def test_sessions_keep_attributes_after_commit(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ferry.db")
    try:
        async with session_factory(engine)() as session:
            await session.commit()
            assert session.sync_session.expire_on_commit is False
    finally:
        await engine.dispose()


async def test_ping_reports_an_unreachable_server() -> None:
    engine = create_engine("postgresql://ferry:hunter2@127.0.0.1:1/ferry")
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            await ping(engine)
    finally:
        await engine.dispose()
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "hunter2" not in message and "\n" not in message
