"""What every `ferry` command shares: loading the config, running a coroutine with known
failures as one line, one transaction, finding a user, and the progress bar of long work.

The command modules (cli.py, cli_export.py, cli_transfer.py) import from here and never from
each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from db.exceptions import DatabaseError
from ferry.config import Config, ConfigError, load_config
from portability.accounts import AccountError
from portability.exports.exceptions import ExportError
from portability.sizes import size_text
from storage.egress import EgressRefused
from storage.exceptions import StorageError
from sts.exceptions import StsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from db.models import User
    from ferry.runtime import Runtime

T = TypeVar("T")


def load(config_path: str | None) -> Config:
    """Load the config and set logging up as its [log] section says."""
    from ferry.logs import setup_logging

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    setup_logging(config.log)
    return config


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; known failures become one line on stderr."""
    try:
        return asyncio.run(coro)
    except (ConfigError, AccountError, DatabaseError, StsError, EgressRefused, ExportError) as exc:
        raise click.ClickException(str(exc)) from None
    except StorageError as exc:
        raise click.ClickException(f"storage: {exc}") from None
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise click.ClickException(f"database: {first}") from None


async def in_session(config: Config, work: Callable[[Runtime, AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one transaction, committed when it returns."""
    from ferry.runtime import open_runtime

    async with open_runtime(config) as runtime, runtime.sessions.begin() as session:
        return await work(runtime, session)


async def find_user(session: AsyncSession, email: str) -> User:
    from sqlalchemy import select

    from db.models import User

    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AccountError(f"no user with email {email}")
    return user


def now() -> datetime:
    return datetime.now(UTC)


def progress_bar(progress: dict[str, Any], status: str = "", width: int = 30) -> str:
    """One line for a request's `metadata.progress`: bar, share, bytes, objects, rate, ETA."""
    done, total = int(progress.get("bytes_done") or 0), int(progress.get("bytes_total") or 0)
    fraction = done / total if total else (1.0 if status in ("completed", "ready") else 0.0)
    filled = round(width * min(1.0, fraction))
    eta = progress.get("eta_seconds")
    phase = progress.get("phase") or status
    return (
        f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:5.1f}%  "
        f"{size_text(done)}/{size_text(total)}  "
        f"{progress.get('objects_done', 0)}/{progress.get('objects_total', 0)} objects  "
        f"{size_text(int(progress.get('bytes_per_second') or 0))}/s  "
        f"ETA {duration_text(eta) if eta is not None else '--'}  {phase}"
    ).rstrip()


def duration_text(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
