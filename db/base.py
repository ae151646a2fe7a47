"""The declarative base every table hangs off, with the constraint naming convention."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from db.types import UTCDateTime

__all__ = ["NAMING_CONVENTION", "Base"]

# Constraints need stable names: SQLite's batch migrations recreate tables and can only drop
# or alter a constraint Alembic can name, and PostgreSQL's generated names differ from them.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    # Every Mapped[datetime] is timezone-aware UTC on both databases; nobody can add a naive
    # timestamp column by forgetting an argument.
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}
