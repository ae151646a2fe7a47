"""Alembic migrations build exactly the models' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from db import migrate
from db.engine import create_engine
from db.exceptions import DatabaseUnavailableError
from db.models import Base
from db.urls import sync_url

TABLES = {
    "users",
    "api_keys",
    "usage_records",
    "billing_records",
    "audit_logs",
    "buckets",
    "credentials",
    "portability_requests",
    "export_jobs",
    "transfer_jobs",
    "transfer_items",
    "transfer_parts",
    "dashboard_sessions",
    "webhook_events",
    "webhooks",
    "webhook_deliveries",
}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        return {column["name"] for column in sa.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def test_sqlite_migration_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/ferry.db"
    migrate.upgrade(url)
    assert migrate.diff(url) == []


@pytest.mark.postgres
def test_postgres_migration_matches_the_models(postgres_url: str) -> None:
    assert migrate.diff(postgres_url) == []


def test_upgrade_twice_downgrade_and_again(empty_database_url: str) -> None:
    url = empty_database_url
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head() == "0010"
    assert _tables(url) == TABLES | {"alembic_version"}
    migrate.upgrade(url)  # at head already: nothing to do, no error
    migrate.downgrade(url, "0009")
    assert "export_jobs" not in _tables(url)
    migrate.downgrade(url, "0006")
    assert "last_sign_in_method" not in _columns(url, "users")
    migrate.downgrade(url, "0004")
    assert "webhooks" not in _tables(url)
    migrate.downgrade(url, "0002")
    assert "dashboard_sessions" not in _tables(url)
    migrate.downgrade(url, "0001")
    assert "transfer_items" not in _tables(url)
    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    assert _tables(url) == {"alembic_version"}
    migrate.upgrade(url)
    assert migrate.diff(url) == []


def test_upgrade_drops_the_links_stored_by_older_versions(empty_database_url: str) -> None:
    """A database written before links were signed on demand keeps no working link."""
    url = empty_database_url
    migrate.upgrade(url, "0002")
    signed = "http://gw/ferry-export-ab/r/personal-data.json?X-Amz-Algorithm=A&X-Amz-Signature=f0"
    meta = {
        "parts": [{"url": signed, "key": "r/personal-data.json", "size": 3, "sha256": "ab"}],
        "manifest_url": signed.replace("personal-data", "manifest"),
        "manifest_key": "r/manifest.json",
        "link_credential": "FRYAAAAAAAAAAAAAAAAA",
    }
    requests = sa.table(
        "portability_requests",
        sa.column("id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("request_type", sa.String()),
        sa.column("status", sa.String()),
        sa.column("export_url", sa.Text()),
        sa.column("metadata", sa.JSON()),
    )
    users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("email", sa.String()))
    user, ready, pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(users.insert().values(id=user, email="old@example.com"))
            conn.execute(
                requests.insert(),
                [
                    dict(
                        id=ready,
                        user_id=user,
                        request_type="export",
                        status="ready",
                        export_url=signed,
                        metadata=meta,
                    ),
                    dict(
                        id=pending,
                        user_id=user,
                        request_type="export",
                        status="pending",
                        export_url=None,
                        metadata={"progress": {}},
                    ),
                ],
            )
        migrate.upgrade(url)
        with engine.connect() as conn:
            rows = {
                r.id: r
                for r in conn.execute(
                    sa.select(requests.c.id, requests.c.export_url, requests.c.metadata)
                )
            }
    finally:
        engine.dispose()
    assert rows[ready].export_url == "http://gw/ferry-export-ab/r/personal-data.json"
    assert rows[ready].metadata == {
        "parts": [{"key": "r/personal-data.json", "size": 3, "sha256": "ab"}],
        "manifest_key": "r/manifest.json",
        "link_credential": "FRYAAAAAAAAAAAAAAAAA",
    }
    assert rows[pending].export_url is None
    assert rows[pending].metadata == {"progress": {}}


def _lease_rows(url: str) -> tuple[sa.Engine, sa.TableClause]:
    requests = sa.table(
        "portability_requests",
        sa.column("id", sa.Uuid()),
        sa.column("user_id", sa.Uuid()),
        sa.column("request_type", sa.String()),
        sa.column("status", sa.String()),
        sa.column("metadata", sa.JSON()),
    )
    return sa.create_engine(sync_url(url), poolclass=sa.NullPool), requests


users = sa.table("users", sa.column("id", sa.Uuid()), sa.column("email", sa.String()))


def _check_export_leases_move_to_export_jobs(url: str) -> None:
    migrate.upgrade(url, "0009")
    engine, requests = _lease_rows(url)
    user, running, ready = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    lease = {"worker": "host-1", "until": "2030-01-02T03:04:05Z"}
    try:
        with engine.begin() as conn:
            conn.execute(users.insert().values(id=user, email="lease@example.com"))
            conn.execute(
                requests.insert(),
                [
                    dict(
                        id=running,
                        user_id=user,
                        request_type="export",
                        status="processing",
                        metadata={"progress": {}, "attempts": 1, "lease": lease},
                    ),
                    dict(
                        id=ready,
                        user_id=user,
                        request_type="export",
                        status="ready",
                        metadata={"report": {}, "lease": None},
                    ),
                ],
            )
        migrate.upgrade(url)
        assert migrate.diff(url) == []
        jobs = sa.table(
            "export_jobs",
            sa.column("request_id", sa.Uuid()),
            sa.column("lease_owner", sa.String()),
            sa.column("lease_expires_at", sa.DateTime(timezone=True)),
        )
        with engine.connect() as conn:
            meta = dict(conn.execute(sa.select(requests.c.id, requests.c.metadata)).all())
            held = conn.execute(sa.select(jobs)).all()
        assert meta[running] == {"progress": {}, "attempts": 1}
        assert meta[ready] == {"report": {}}
        ((job, owner, until),) = held  # the running export's, and only it
        assert (job, owner) == (running, "host-1")
        assert until.replace(tzinfo=until.tzinfo or UTC) == datetime(
            2030, 1, 2, 3, 4, 5, tzinfo=UTC
        )

        migrate.downgrade(url, "0009")
        with engine.connect() as conn:
            back = dict(conn.execute(sa.select(requests.c.id, requests.c.metadata)).all())
        assert back[running] == {"progress": {}, "attempts": 1, "lease": lease}
        assert back[ready] == {"report": {}}
    finally:
        engine.dispose()


def test_a_running_export_keeps_its_lease_across_the_upgrade(empty_database_url: str) -> None:
    """Migration 0010 moves `metadata.lease` into export_jobs (and back on downgrade)."""
    _check_export_leases_move_to_export_jobs(empty_database_url)


def test_a_running_export_keeps_its_lease_across_the_upgrade_on_sqlite(tmp_path: Path) -> None:
    _check_export_leases_move_to_export_jobs(f"sqlite+aiosqlite:///{tmp_path}/ferry.db")


def test_metadata_create_all_builds_the_migrated_schema(empty_database_url: str) -> None:
    # Tests elsewhere may build tables with create_all(); on PostgreSQL that includes the
    # gen_random_uuid() default, which is not a Column argument.
    engine = sa.create_engine(sync_url(empty_database_url), poolclass=sa.NullPool)
    try:
        Base.metadata.create_all(engine)
    finally:
        engine.dispose()
    assert migrate.diff(empty_database_url) == []


def test_a_fresh_sqlite_path_is_created_and_looking_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deeper" / "ferry.db"
    url = f"sqlite:///{path}"
    assert migrate.current(url) is None
    assert not path.parent.exists()
    migrate.upgrade(url)
    assert path.is_file()
    assert migrate.current(url) == migrate.head()


async def test_upgrade_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/ferry.db"
    migrate.upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(sa.text("SELECT count(*) FROM users"))
        assert count == 0
    finally:
        await engine.dispose()


def test_an_unreachable_server_is_a_typed_one_line_error() -> None:
    url = "postgresql+psycopg://ferry:hunter2@127.0.0.1:1/ferry"
    for call in (migrate.upgrade, migrate.current):
        with pytest.raises(DatabaseUnavailableError) as caught:
            call(url)
        message = str(caught.value)
        assert "127.0.0.1:1" in message
        assert "hunter2" not in message and "\n" not in message
