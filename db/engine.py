"""Async engines and sessions for SQLite (aiosqlite) and PostgreSQL (psycopg 3).

Create one engine per process in the app's lifespan, dispose of it on shutdown, and open one
session per request or job (never share a session between tasks)::

    engine = create_engine(config.database.url)
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        ...
    await engine.dispose()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from db.exceptions import DatabaseUnavailableError
from db.urls import check_url, parse_url, redact, sqlite_path
from db.wakeup import SIGNAL_KEY, WorkSignal

__all__ = ["check_url", "create_engine", "ping", "session_factory"]

# How long a SQLite writer waits for another one before "database is locked". The gateway's
# audit batches, the worker and the API share one file; waits are short but do happen.
SQLITE_BUSY_TIMEOUT_MS = 30_000

# Bound the wait for an unreachable PostgreSQL host (psycopg's default is the OS TCP timeout).
PG_CONNECT_TIMEOUT_S = 10

# A health check that hangs is worse than one that says "down".
PING_TIMEOUT_S = 5.0


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file 0600 and its missing directories 0700, whatever the umask.

    The database holds personal data and sealed secrets; SQLite gives the -wal, -shm and
    -journal files it makes later the database file's own mode. (`storage.files` does the same
    for storage; db/ imports nothing of ours, hence these few lines of its own.)
    """
    missing = []
    current = path.parent
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def create_engine(url: str, *, connect_patience: float = 0, **kw: Any) -> AsyncEngine:
    """An :class:`AsyncEngine` for ``url`` (checked and rewritten by :func:`check_url`).

    SQLite: the file and its directory are created owner-only, and every connection gets
    foreign keys on, WAL (readers do not block the writer) and a busy timeout. PostgreSQL:
    connections are pinged before use, so a restarted server costs no failed request; with
    ``connect_patience`` (seconds) a new connection is retried while the server is down or
    starting, so a restart looks like a slow query rather than an error (for background
    workers; a request handler would rather fail fast). ``kw`` goes to
    :func:`sqlalchemy.ext.asyncio.create_async_engine` and wins over these defaults.
    """
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if parsed.get_backend_name() == "sqlite":
        if path is not None:
            private_sqlite_file(path)
        engine = _create_async_engine(parsed, **kw)
        sa.event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
        return engine
    kw.setdefault("pool_pre_ping", True)
    kw["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S, **kw.get("connect_args", {})}
    if connect_patience > 0 and parsed.get_driver_name() == "psycopg":
        kw.setdefault(
            "async_creator", _patient_connect(parsed, kw["connect_args"], connect_patience)
        )
    return _create_async_engine(parsed, **kw)


def _patient_connect(
    parsed: sa.URL, connect_args: dict[str, Any], patience: float
) -> Callable[[], Awaitable[Any]]:
    """psycopg's connect, retried with backoff for up to ``patience`` seconds."""
    import psycopg

    # The dialect's own connect arguments (host, dbname, its type adapters), as it would pass.
    cargs, cparams = _create_async_engine(parsed).dialect.create_connect_args(parsed)
    cparams.update(connect_args)

    async def connect() -> Any:
        deadline = time.monotonic() + patience
        delay = 0.1
        while True:
            try:
                return await psycopg.AsyncConnection.connect(*cargs, **cparams)
            except psycopg.OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    return connect


def session_factory(
    engine: AsyncEngine, *, signal: WorkSignal | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine``.

    ``expire_on_commit=False``: after a commit, attributes stay readable; with asyncio the
    implicit reload an expired attribute would need is an error, not a query. ``signal``:
    the process's WorkSignal, woken when a transaction that announced work commits.
    """
    info = {SIGNAL_KEY: signal} if signal is not None else None
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


async def ping(engine: AsyncEngine) -> None:
    """Run ``SELECT 1``; raise :class:`DatabaseUnavailableError` if it fails or takes too long.

    Bounded by :data:`PING_TIMEOUT_S`; wrap it in ``asyncio.timeout`` for a shorter bound.
    """
    try:
        async with asyncio.timeout(PING_TIMEOUT_S):
            async with engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
    except TimeoutError as exc:
        raise DatabaseUnavailableError(
            f"database {redact(engine.url)} did not answer within {PING_TIMEOUT_S:g}s"
        ) from exc
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailableError(
            f"database {redact(engine.url)} is unavailable: {first_line(exc)}"
        ) from exc


def first_line(exc: BaseException) -> str:
    """The driver's own message, on one line (SQLAlchemy's adds the SQL and a help link)."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # SQLite leaves foreign keys off unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL is a property of the file; asking again on each connection is a cheap no-op.
        cursor.execute("PRAGMA journal_mode = WAL")
        # Safe with WAL (a power cut may lose the last commits, never corrupt the file).
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
