"""Schema migrations: Alembic, driven from Python.

The entry points are synchronous and run on the sync twin of the configured driver (pysqlite,
psycopg): they work from a click command, at process start, and from inside a running event
loop (a test) without nesting loops. From async code that must not block, use
``await asyncio.to_thread(upgrade, url)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from db.engine import first_line, private_sqlite_file
from db.exceptions import DatabaseUnavailableError, MigrationError
from db.models import POSTGRESQL_SERVER_DEFAULT, Base
from db.types import UTCDateTime
from db.urls import redact, sqlite_path, sync_url

__all__ = [
    "alembic_config",
    "context_options",
    "current",
    "diff",
    "downgrade",
    "head",
    "locked_transaction",
    "open_connection",
    "upgrade",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any number of `ferry serve` processes may start at once against one PostgreSQL database;
# the first to take this transaction-scoped advisory lock migrates, the others then find the
# schema at head. (An arbitrary constant: the bytes of "ferrymig".)
_PG_MIGRATION_LOCK = int.from_bytes(b"ferrymig", "big")


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (default: the newest).

    A fresh SQLite file (and its directory) is created. Raises
    :class:`~db.exceptions.DatabaseUnavailableError` when the database cannot be reached and
    :class:`~db.exceptions.MigrationError` when a migration fails (nothing is half-applied on
    PostgreSQL, where DDL is transactional).
    """
    with locked_transaction(url) as connection:
        try:
            command.upgrade(alembic_config(connection), revision)
        except (CommandError, sa.exc.SQLAlchemyError) as exc:
            raise MigrationError(
                f"upgrade of {redact(url)} to {revision} failed: {first_line(exc)}"
            ) from exc


def downgrade(url: str, revision: str) -> None:
    """Take the database at ``url`` back to ``revision`` (``"base"``: no tables)."""
    with locked_transaction(url) as connection:
        try:
            command.downgrade(alembic_config(connection), revision)
        except (CommandError, sa.exc.SQLAlchemyError) as exc:
            raise MigrationError(
                f"downgrade of {redact(url)} to {revision} failed: {first_line(exc)}"
            ) from exc


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; None when it was never migrated.

    Looking does not create anything: a SQLite file that does not exist is simply at None.
    """
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    with open_connection(url) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    """The newest revision this code ships: what :func:`upgrade` brings a database to."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:  # pragma: no cover - the package always ships 0001
        raise MigrationError("no migrations found in " + str(MIGRATIONS))
    return revision


def diff(url: str) -> list[Any]:
    """What differs between the database at ``url`` and the models, as Alembic sees it.

    An empty list means the migrations built exactly the models' schema (tables, columns,
    types, nullability, indexes, unique constraints, foreign keys).
    """
    with open_connection(url) as connection:
        context = MigrationContext.configure(
            connection, opts=context_options(connection.dialect.name)
        )
        return list(compare_metadata(context, Base.metadata))


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """Alembic's Config for the packaged migrations; env.py runs on ``connection`` if given."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    # Passed as an object, not as sqlalchemy.url: an ini value would be %-interpolated, and
    # the migration must run inside the transaction that holds the advisory lock.
    config.attributes["connection"] = connection
    return config


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options for Alembic's MigrationContext, shared by env.py and :func:`diff`."""
    return {
        "target_metadata": Base.metadata,
        # SQLite cannot ALTER most things: Alembic copies the table instead ("batch" mode).
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "compare_server_default": _compare_server_default,
        "render_item": _render_item,
    }


def _compare_server_default(
    context: MigrationContext,
    inspected_column: sa.Column[Any],
    metadata_column: sa.Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """True if the defaults differ, False if not, None: let Alembic decide."""
    dialect = context.dialect.name
    postgresql_only = metadata_column.info.get(POSTGRESQL_SERVER_DEFAULT)
    if postgresql_only is not None:
        expected = postgresql_only if dialect == "postgresql" else None
        return inspected_default != expected
    if dialect == "sqlite" and rendered_metadata_default == "":
        # Alembic's SQLite comparison unquotes non-empty literals only.
        return inspected_default not in ("''", "('')")
    return None


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    # Revisions must not import the models (they change; a revision is frozen), so the
    # timestamp decorator is written as the type the database sees.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _sync_engine(url: str) -> sa.Engine:
    target = sync_url(url)
    path = sqlite_path(target)
    if path is not None:
        private_sqlite_file(path)
    # No foreign-key pragma here, on purpose: batch migrations on SQLite drop and recreate
    # tables, which foreign-key enforcement would turn into cascades or failures.
    return sa.create_engine(target, poolclass=sa.NullPool)


@contextmanager
def open_connection(url: str) -> Iterator[sa.Connection]:
    """A sync connection to ``url``; :class:`DatabaseUnavailableError` if there is none."""
    engine = _sync_engine(url)
    try:
        try:
            connection = engine.connect()
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailableError(
                f"database {redact(url)} is unavailable: {first_line(exc)}"
            ) from exc
        with connection:
            yield connection
    finally:
        engine.dispose()


@contextmanager
def locked_transaction(url: str) -> Iterator[sa.Connection]:
    """A transaction on ``url`` holding the migration lock (PostgreSQL; SQLite has one writer)."""
    with open_connection(url) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
            )
        yield connection
