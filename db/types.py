"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

__all__ = ["AutoId", "JSONType", "UTCDateTime", "utcnow"]


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: the only kind of datetime the tables hold."""
    return datetime.now(UTC)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """``TIMESTAMPTZ`` on PostgreSQL; on SQLite, which has no time zones, UTC text.

    Values go in timezone-aware (naive ones are refused: their zone is a guess) and always
    come back timezone-aware in UTC, whichever database and session time zone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given: attach a time zone")
        value = value.astimezone(UTC)
        # SQLite stores the text as given: drop the offset so every row sorts as plain UTC.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # SQLite: written above as UTC, or by CURRENT_TIMESTAMP, which is UTC too.
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def python_type(self) -> type[datetime]:
        return datetime


# JSONB on PostgreSQL (indexable, compact); SQLite's JSON is text. none_as_null: a Python None
# is SQL NULL, not the JSON document ``null``, so "IS NULL" finds it.
JSONType: sa.types.TypeEngine[Any] = sa.JSON(none_as_null=True).with_variant(
    postgresql.JSONB(none_as_null=True), "postgresql"
)

# BIGINT identity on PostgreSQL; SQLite only auto-increments a column typed exactly INTEGER
# PRIMARY KEY (its rowid alias), which is 64-bit there anyway.
AutoId: sa.types.TypeEngine[int] = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
