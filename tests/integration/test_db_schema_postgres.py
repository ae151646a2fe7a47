"""On PostgreSQL, the migrated portability_requests table is DESIGN.md's seed, read back from
the catalog rather than from SQLAlchemy's reflection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from db.urls import sync_url

pytestmark = pytest.mark.postgres

# column -> (type as information_schema spells it, nullable, default)
SEED_COLUMNS = {
    "id": ("uuid", False, "gen_random_uuid()"),
    "user_id": ("uuid", False, None),
    "request_type": ("character varying(50)", False, None),
    "status": ("character varying(50)", False, None),
    "format": ("character varying(50)", True, None),
    "export_url": ("text", True, None),
    "expires_at": ("timestamp with time zone", True, None),
    "transfer_destination": ("text", True, None),
    "created_at": ("timestamp with time zone", True, "now()"),
    "completed_at": ("timestamp with time zone", True, None),
    "metadata": ("jsonb", True, None),
}


@pytest.fixture(scope="module")
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sync_url(postgres_url), poolclass=sa.NullPool)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def pg(pg_engine: sa.Engine) -> Iterator[sa.Connection]:
    with pg_engine.connect() as connection:
        yield connection


def test_columns_types_nullability_and_defaults(pg: sa.Connection) -> None:
    rows = pg.execute(
        sa.text(
            """
            SELECT column_name,
                   CASE WHEN character_maximum_length IS NOT NULL
                        THEN data_type || '(' || character_maximum_length || ')'
                        ELSE data_type END,
                   is_nullable = 'YES',
                   column_default
            FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'portability_requests'
            ORDER BY ordinal_position
            """
        )
    ).all()
    assert [row[0] for row in rows] == list(SEED_COLUMNS)  # and in the seed's order
    assert {row[0]: tuple(row[1:]) for row in rows} == SEED_COLUMNS


def test_primary_key_and_foreign_key_to_users(pg: sa.Connection) -> None:
    constraints = pg.execute(
        sa.text(
            """
            SELECT tc.constraint_type, kcu.column_name, ccu.table_name, ccu.column_name
            FROM information_schema.table_constraints tc
            JOIN information_schema.key_column_usage kcu
              ON kcu.constraint_schema = tc.constraint_schema
             AND kcu.constraint_name = tc.constraint_name
            LEFT JOIN information_schema.referential_constraints rc
              ON rc.constraint_schema = tc.constraint_schema
             AND rc.constraint_name = tc.constraint_name
            LEFT JOIN information_schema.key_column_usage ccu
              ON ccu.constraint_schema = rc.unique_constraint_schema
             AND ccu.constraint_name = rc.unique_constraint_name
             AND ccu.ordinal_position = kcu.position_in_unique_constraint
            WHERE tc.table_schema = current_schema() AND tc.table_name = 'portability_requests'
              AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')
            """
        )
    ).all()
    assert sorted(tuple(row) for row in constraints) == [
        ("FOREIGN KEY", "user_id", "users", "id"),
        ("PRIMARY KEY", "id", None, None),
    ]


def test_the_seed_indexes_by_name_and_column(pg: sa.Connection) -> None:
    indexes: dict[str, str] = dict(
        pg.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = current_schema() AND tablename = 'portability_requests'"
            )
        ).all()
    )
    assert set(indexes) == {
        "pk_portability_requests",
        "idx_portability_user",
        "idx_portability_status",
    }
    assert indexes["idx_portability_user"].endswith("USING btree (user_id)")
    assert indexes["idx_portability_status"].endswith("USING btree (status)")


def test_plain_sql_insert_gets_a_uuid_and_a_timestamp(pg: sa.Connection) -> None:
    with pg.begin():
        user_id = uuid.uuid4()
        pg.execute(
            sa.text("INSERT INTO users (id, email) VALUES (:id, :email)"),
            {"id": user_id, "email": f"{user_id}@example.com"},
        )
        row = pg.execute(
            sa.text(
                "INSERT INTO portability_requests (user_id, request_type, status, metadata) "
                "VALUES (:user_id, 'export', 'pending', '{\"parts\": []}') "
                "RETURNING id, created_at, metadata"
            ),
            {"user_id": user_id},
        ).one()
    assert isinstance(row.id, uuid.UUID) and row.id.version == 4
    assert row.created_at.tzinfo is not None
    assert row.metadata == {"parts": []}
