"""Personal-data sources that need no provider server: a source on a SQLite file, an
entry-point source found through real package metadata, the refusals of bad queries when the
config is read, and a provider database that cannot be reached.

The provider's own PostgreSQL database is in test_personal_data_sources.py.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa

from db.engine import create_engine, session_factory
from ferry.config import ConfigError, load_config
from ferry.runtime import personal_data_sources
from portability.accounts import create_user
from portability.exports.personal import personal_data, schema
from portability.exports.sources import SourceFailed, SourceSpec, Subject, build_sources
from tests.support.personal_data import NOW, user_id_of


def test_bad_queries_are_refused_when_the_config_is_read(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/provider.db"
    for query, message in (
        ("SELECT * FROM usage", "must select by :email or :user_id"),
        ("DELETE FROM usage WHERE email = :email", "must be one SELECT"),
        ("SELECT 1 WHERE :email = 1; DROP TABLE x", "must be one SELECT"),
        ("SELECT * FROM u WHERE e = :email AND t = :tenant", "unknown parameter(s) :tenant"),
    ):
        config = load_config(
            None,
            env={"FERRY_PERSONAL_DATA_USAGE_URL": url, "FERRY_PERSONAL_DATA_USAGE_QUERY": query},
        )
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            personal_data_sources(config, session_factory(create_engine(url)))
    misnamed = load_config(
        None,
        env={
            "FERRY_PERSONAL_DATA_USAGE_URL": url,
            "FERRY_PERSONAL_DATA_USAGE_QUERY": "SELECT * FROM u WHERE e = :email",
        },
    )
    misnamed = dataclasses.replace(
        misnamed,
        personal_data=(
            (
                "usage",
                dataclasses.replace(
                    misnamed.personal_data_source("usage"), columns=(("bytes", "b"),)
                ),
            ),
        ),
    )
    with pytest.raises(ConfigError, match=r"no field\(s\) bytes in this section"):
        personal_data_sources(misnamed, session_factory(create_engine(url)))
    with pytest.raises(ConfigError, match="needs both url and query"):
        load_config(None, env={"FERRY_PERSONAL_DATA_BILLING_URL": url})
    with pytest.raises(ConfigError, match="unknown section"):
        (tmp_path / "c.toml").write_text("[personal_data.invoices]\nurl = 'x'\n")
        load_config(tmp_path / "c.toml", env={})


async def test_the_profile_comes_from_a_sqlite_source(tmp_path: Path, database_url: str) -> None:
    sync = sa.create_engine(f"sqlite:///{tmp_path}/crm.db")
    email = f"pat-{uuid.uuid4().hex[:8]}@example.com"
    with sync.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE people (mail TEXT, full_name TEXT, since DATE)")
        conn.execute(
            sa.text("INSERT INTO people VALUES (:email, 'Pat Example', '2019-05-01')"),
            {"email": email},
        )
    sync.dispose()
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        profile = SourceSpec(
            "profile",
            kind="sql",
            url=f"sqlite+aiosqlite:///{tmp_path}/crm.db",
            query="SELECT mail, full_name, 0 AS is_admin, since, 'crm-17' AS id "
            "FROM people WHERE mail = :email",
            columns={"email": "mail", "name": "full_name", "created_at": "since"},
        )
        user_id = await user_id_of(sessions, email)
        sources = build_sources(sessions, [profile])
        raw = b"".join(
            [c async for c in personal_data(sessions, user_id, now=NOW, sources=sources)]
        )
        document = json.loads(raw)
        jsonschema.validate(document, schema())
        subject = document["subject"]
        assert subject["name"] == "Pat Example"
        assert subject["created_at"] == "2019-05-01T00:00:00Z"
        assert subject["id"] == str(user_id)  # the document's key stays Ferry's
    finally:
        await engine.dispose()


class _Crm:
    """What a provider's own plugin might be: rows from anywhere, here from memory."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec

    async def rows(self, section: str, subject: Subject) -> AsyncIterator[Mapping[str, Any]]:
        for n in range(3):
            yield {
                "id": str(uuid.uuid4()),
                "name": f"key {n}",
                "key": f"crm_live_{n:04d}abcdefghijkl{n:04d}",  # unmasked: Ferry masks it
                "created_at": datetime(2025, 1, n + 1, tzinfo=UTC),
                "last_used_at": None,
                "revoked_at": None,
                "extra": "dropped",
            }


def crm_factory(spec: SourceSpec) -> _Crm:
    return _Crm(spec)


@pytest.fixture
def crm_entry_point(tmp_path: Path) -> Iterator[None]:
    """A real distribution's metadata declaring a `ferry.personal_data` entry point."""
    dist = tmp_path / "site" / "provider_crm-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: provider-crm\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[ferry.personal_data]\ncrm = {__name__}:crm_factory\n")
    sys.path.insert(0, str(tmp_path / "site"))
    try:
        yield
    finally:
        sys.path.remove(str(tmp_path / "site"))


async def test_an_entry_point_source_supplies_a_section(
    crm_entry_point: None, database_url: str
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        config = load_config(None, env={"FERRY_PERSONAL_DATA_API_KEYS_SOURCE": "crm"})
        sources = personal_data_sources(config, sessions)
        email = f"crm-{uuid.uuid4().hex[:8]}@example.com"
        async with sessions.begin() as db:
            user, _ = await create_user(db, email)
        raw = b"".join(
            [c async for c in personal_data(sessions, user.id, now=NOW, sources=sources)]
        )
        document = json.loads(raw)
        jsonschema.validate(document, schema())
        keys = document["api_keys"]
        assert [k["name"] for k in keys] == ["key 0", "key 1", "key 2"]
        assert keys[0]["key"] == "crm_live…0000"
        assert b"abcdefghijkl" not in raw
        with pytest.raises(ConfigError, match="no source 'nope'"):
            personal_data_sources(
                load_config(None, env={"FERRY_PERSONAL_DATA_USAGE_SOURCE": "nope"}), sessions
            )
    finally:
        await engine.dispose()


async def test_an_unreachable_provider_database_fails_the_section(database_url: str) -> None:
    from tests.support.ferry import free_port

    url = f"postgresql+psycopg://ferry_ro:s3cret@127.0.0.1:{free_port()}/billing"
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        spec = SourceSpec("billing", kind="sql", url=url, query="SELECT * FROM i WHERE e = :email")
        sources = build_sources(sessions, [spec])
        user_id = await user_id_of(sessions, f"gone-{uuid.uuid4().hex[:8]}@example.com")
        with pytest.raises(SourceFailed) as failed:
            async for _ in personal_data(sessions, user_id, now=NOW, sources=sources):
                pass
        message = str(failed.value)
        assert message == (
            "personal data: the billing section could not be read "
            "(its query failed: OperationalError)"
        )
        assert "s3cret" not in repr(sources["billing"]) and "s3cret" not in message
    finally:
        await engine.dispose()
