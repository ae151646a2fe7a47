"""Alembic's environment for Ferry.

Normally run by :func:`db.migrate.upgrade`, which hands over an open connection in
``config.attributes["connection"]``. Run by the ``alembic`` command itself, it takes the URL
from ``-x url=...`` or ``FERRY_DATABASE_URL``. Logging is left alone: this code also runs
inside ``ferry`` and pytest, whose logging Alembic's usual ``fileConfig`` would reset.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from db.migrate import context_options, locked_transaction
from db.urls import sync_url

config = context.config


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "FERRY_DATABASE_URL", ""
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=... or set FERRY_DATABASE_URL")
    return url


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    url = sync_url(_url())
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(url.get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: sa.Connection) -> None:
    context.configure(connection=connection, **context_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if context.is_offline_mode():
    run_offline()
elif given is not None:
    run_online(given)
else:
    with locked_transaction(_url()) as connection:
        run_online(connection)
