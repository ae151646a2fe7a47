"""Errors raised by the ``db`` package.

Everything the package raises on purpose derives from :class:`DatabaseError`, so a caller at
an edge (the CLI, a health check) can catch one type and print one line::

    DatabaseError
     ├── DatabaseConfigError       the URL is malformed or names an unsupported driver
     ├── DatabaseUnavailableError  the server (or SQLite file) cannot be reached
     └── MigrationError            Alembic could not bring the schema to the wanted revision

Foreign errors (SQLAlchemy, psycopg, sqlite3, Alembic) are chained as ``__cause__``; messages
never contain a password.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class of every error raised by ``db``."""


class DatabaseConfigError(DatabaseError):
    """The database URL cannot be used: malformed, or a backend/driver Ferry does not support."""


class DatabaseUnavailableError(DatabaseError):
    """The database did not answer (refused, timed out, unreadable file)."""


class MigrationError(DatabaseError):
    """A migration failed or the schema is at a revision this code does not know."""
