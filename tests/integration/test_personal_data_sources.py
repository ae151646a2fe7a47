"""Personal data from the provider's own records: usage and billing read from its database.

A second PostgreSQL database plays the provider's billing system, in its own shape: a table
`acct_usage` with 100,000 rows for one account (and rows of another account that must not
leak), and `invoices` with amounts in minor units, dates without times and its own status
words. Ferry is configured as an operator would (`FERRY_PERSONAL_DATA_USAGE_URL`, `_QUERY`,
`columns`) and builds the export with its real worker into real storage: the document
validates against the shipped schema, holds exactly the provider's rows, and streams in
chunks of about 256 KiB with a peak of Python memory far below the document's size. A query
that fails makes the request `failed`, naming the section, with nothing delivered.

The sources that need no provider server are in test_personal_data_source_kinds.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa

from db.engine import create_engine, session_factory
from db.models import PortabilityRequest, User
from ferry.config import load_config
from ferry.runtime import personal_data_sources
from portability.credentials import GatewayAddress
from portability.exports.personal import personal_data, schema
from portability.exports.service import create_export, parse_export
from portability.exports.settings import ExportSettings
from portability.exports.sources import SourceFailed, SourceSpec, Subject, build_sources
from portability.exports.worker import ExportWorker
from storage.local import LocalStorage
from tests.fixtures.database import fresh_postgres_database, postgres_server_url
from tests.support.personal_data import NOW, user_id_of

ROWS = 100_000
INVOICES = 1_000

USAGE_QUERY = (
    "SELECT bkt_name AS bucket, window_from, window_to, bytes_stored, bytes_out, bytes_in, "
    "api_calls FROM acct_usage WHERE account_email = :email ORDER BY window_from, usage_id"
)
USAGE_COLUMNS = {
    "period_start": "window_from",
    "period_end": "window_to",
    "storage_bytes": "bytes_stored",
    "egress_bytes": "bytes_out",
    "ingress_bytes": "bytes_in",
    "requests": "api_calls",
}
BILLING_QUERY = (
    "SELECT inv_no, period_from, period_to, total_minor, cur, memo, "
    "CASE state WHEN 'settled' THEN 'paid' WHEN 'due' THEN 'open' ELSE 'void' END AS status, "
    "issued_at FROM invoices WHERE account_email = :email ORDER BY period_from, inv_no"
)
BILLING_COLUMNS = {
    "invoice_number": "inv_no",
    "period_start": "period_from",
    "period_end": "period_to",
    "amount_cents": "total_minor",
    "currency": "cur",
    "description": "memo",
    "created_at": "issued_at",
}

PROVIDER_SCHEMA = """
CREATE TABLE acct_usage (
    usage_id bigserial PRIMARY KEY,
    account_email text NOT NULL,
    bkt_name text NOT NULL,
    window_from timestamptz NOT NULL,
    window_to timestamptz NOT NULL,
    bytes_stored bigint NOT NULL,
    bytes_out bigint NOT NULL,
    bytes_in bigint NOT NULL,
    api_calls integer NOT NULL
);
CREATE INDEX acct_usage_email ON acct_usage (account_email, window_from);
CREATE TABLE invoices (
    inv_no text PRIMARY KEY,
    account_email text NOT NULL,
    period_from date NOT NULL,
    period_to date NOT NULL,
    total_minor numeric(14, 0) NOT NULL,
    cur char(3) NOT NULL,
    memo text,
    state text NOT NULL,
    issued_at timestamptz NOT NULL
);
"""


PROVIDER_ROWS = """
INSERT INTO acct_usage (account_email, bkt_name, window_from, window_to, bytes_stored,
                        bytes_out, bytes_in, api_calls)
SELECT :email, 'photos-' || (i % 7),
       timestamptz '2016-01-01 00:00+00' + i * interval '1 hour',
       timestamptz '2016-01-01 01:00+00' + i * interval '1 hour',
       i * 1024, i % 5000, i % 300, i % 97
FROM generate_series(1, :rows) AS i;
INSERT INTO acct_usage (account_email, bkt_name, window_from, window_to, bytes_stored,
                        bytes_out, bytes_in, api_calls)
SELECT :other, 'not-yours', now(), now(), 1, 1, 1, 1 FROM generate_series(1, 500);
INSERT INTO invoices
SELECT 'INV-' || lpad(CAST(i AS text), 6, '0'), :email,
       date '2010-01-01' + i, date '2010-01-02' + i, 1999 + i, 'EUR',
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'Storage, month ' || i END,
       CASE i % 3 WHEN 0 THEN 'settled' WHEN 1 THEN 'due' ELSE 'voided' END,
       timestamptz '2010-01-03 12:00+00' + i * interval '1 day'
FROM generate_series(1, :invoices) AS i;
INSERT INTO invoices VALUES ('X-1', :other, '2020-01-01', '2020-01-31', 5, 'USD', NULL,
                             'due', now());
"""


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One storage for the module, as the database is one: the export bucket's row and its
    storage bucket are made together, once per user."""
    return tmp_path_factory.mktemp("storage")


@pytest.fixture(scope="module")
def people() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"alice": f"alice-{tag}@example.com", "other": f"other-{tag}@example.com"}


@pytest.fixture(scope="module")
def provider_db(people: dict[str, str]) -> Iterator[str]:
    """The provider's own billing database: a second PostgreSQL database, its own shape."""
    server = postgres_server_url()
    if server is None:
        pytest.skip("PostgreSQL not configured: set FERRY_TEST_DATABASE_URL")
    with fresh_postgres_database(server) as url:
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(PROVIDER_SCHEMA)
                params = {
                    "email": people["alice"],
                    "other": people["other"],
                    "rows": ROWS,
                    "invoices": INVOICES,
                }
                for statement in PROVIDER_ROWS.split(";"):
                    if statement.strip():
                        conn.execute(sa.text(statement), params)
        finally:
            engine.dispose()
        yield url


def provider_env(provider_db: str, **overrides: str) -> dict[str, str]:
    env = {
        "FERRY_PERSONAL_DATA_USAGE_URL": provider_db,
        "FERRY_PERSONAL_DATA_USAGE_QUERY": USAGE_QUERY,
        "FERRY_PERSONAL_DATA_BILLING_URL": provider_db,
        "FERRY_PERSONAL_DATA_BILLING_QUERY": BILLING_QUERY,
    }
    env.update(overrides)
    return env


def provider_config(tmp_path: Path, provider_db: str, **overrides: str) -> Any:
    """[personal_data.*] as an operator writes it: columns in the file, the rest by env."""
    lines = ["[personal_data.usage.columns]"]
    lines += [f'{field} = "{column}"' for field, column in USAGE_COLUMNS.items()]
    lines += ["[personal_data.billing.columns]"]
    lines += [f'{field} = "{column}"' for field, column in BILLING_COLUMNS.items()]
    path = tmp_path / "ferry.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path, env=provider_env(provider_db, **overrides))


async def _document(storage: LocalStorage, request_id: uuid.UUID) -> bytes | None:
    """The export's personal-data.json as stored, or None when nothing was delivered."""
    if not await storage.bucket_exists(ExportSettings().exports_bucket):
        return None
    page = await storage.list(ExportSettings().exports_bucket, max_keys=1000)
    keys = [o.key for o in page.objects if str(request_id) in o.key]
    if not keys:
        return None
    opened = await storage.get(ExportSettings().exports_bucket, keys[0])
    return b"".join([chunk async for chunk in opened.body])


async def _export(
    database_url: str, storage_root: Path, email: str, config: Any
) -> tuple[PortabilityRequest, bytes | None]:
    """Build a JSON export of `email` with the real worker; the request and the document."""
    engine = create_engine(database_url)
    storage = LocalStorage(storage_root)
    sessions = session_factory(engine)
    settings = ExportSettings(upload_chunk_size=5 * 1024 * 1024)
    try:
        user_id = await user_id_of(sessions, email)
        async with sessions.begin() as db:
            user = await db.get(User, user_id)
            assert user is not None
            request, _ = await create_export(
                db,
                bytes(32),
                user,
                parse_export({"request_type": "export", "format": "json"}),
                settings=settings,
                endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
                now=NOW,
            )
            request_id = request.id
        worker = ExportWorker(
            sessions=sessions,
            storage=storage,
            master_key=bytes(32),
            settings=settings,
            sources=personal_data_sources(config, sessions),
        )
        assert await worker.claim() == request_id
        await worker.process(request_id)
        async with sessions() as db:
            done = await db.get(PortabilityRequest, request_id)
            assert done is not None
        return done, await _document(storage, request_id)
    finally:
        await storage.close()
        await engine.dispose()


@pytest.mark.postgres
def test_usage_and_billing_come_from_the_providers_database(
    database_url: str, provider_db: str, people: dict[str, str], tmp_path: Path, storage_root: Path
) -> None:
    config = provider_config(tmp_path, provider_db)
    started = time.monotonic()
    request, raw = asyncio.run(_export(database_url, storage_root, people["alice"], config))
    took = time.monotonic() - started
    assert request.status == "ready", request.meta
    assert raw is not None
    document = json.loads(raw)
    jsonschema.validate(document, schema())
    usage, billing = document["usage"], document["billing"]
    assert len(usage) == ROWS and len(billing) == INVOICES
    # Exactly the provider's rows, in its order, none of the other account's.
    assert usage[0] == {
        "bucket": "photos-1",
        "period_start": "2016-01-01T01:00:00Z",
        "period_end": "2016-01-01T02:00:00Z",
        "storage_bytes": 1024,
        "egress_bytes": 1,
        "ingress_bytes": 1,
        "requests": 1,
    }
    assert usage[-1]["storage_bytes"] == ROWS * 1024
    assert sum(row["requests"] for row in usage) == sum(i % 97 for i in range(1, ROWS + 1))
    assert all(row["bucket"] != "not-yours" for row in usage)
    assert billing[0] == {
        "invoice_number": "INV-000001",
        "period_start": "2010-01-02T00:00:00Z",
        "period_end": "2010-01-03T00:00:00Z",
        "amount_cents": 2000,
        "currency": "EUR",
        "description": "Storage, month 1",
        "status": "open",
        "created_at": "2010-01-04T12:00:00Z",
    }
    assert {row["status"] for row in billing} == {"paid", "open", "void"}
    assert all(row["invoice_number"] != "X-1" for row in billing)
    # Ferry's own sections stay Ferry's.
    assert document["subject"]["email"] == people["alice"]
    assert document["api_keys"] and "…" in document["api_keys"][0]["key"]
    print(f"\n{ROWS + INVOICES} provider rows exported in {took:.2f} s, {len(raw)} bytes")


@pytest.mark.postgres
def test_the_document_streams_with_bounded_memory(
    database_url: str, provider_db: str, people: dict[str, str], tmp_path: Path
) -> None:
    config = provider_config(tmp_path, provider_db)

    async def measure() -> tuple[int, int, int, int]:
        engine = create_engine(database_url)
        sessions = session_factory(engine)
        try:
            user_id = await user_id_of(sessions, people["alice"])
            sources = personal_data_sources(config, sessions)
            chunks = total = biggest = 0
            tracemalloc.start()
            try:
                async for chunk in personal_data(sessions, user_id, now=NOW, sources=sources):
                    chunks += 1
                    total += len(chunk)
                    biggest = max(biggest, len(chunk))
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            return chunks, total, biggest, peak
        finally:
            await engine.dispose()

    chunks, total, biggest, peak = asyncio.run(measure())
    assert total > 15 * 1024 * 1024  # the document: some 19 MB
    assert chunks > 50
    assert biggest < 300 * 1024
    # Rows are fetched 2,000 at a time and encoded one by one: the peak is a few MiB
    # whatever the row count (the whole document would be several times its size).
    assert peak < 8 * 1024 * 1024, peak
    print(f"\n{total} bytes in {chunks} chunks (largest {biggest}); Python peak {peak} bytes")


@pytest.mark.postgres
def test_a_failing_query_fails_the_request_naming_the_section(
    database_url: str, provider_db: str, people: dict[str, str], tmp_path: Path, storage_root: Path
) -> None:
    broken = BILLING_QUERY.replace("total_minor,", "total_major,")
    config = provider_config(tmp_path, provider_db, FERRY_PERSONAL_DATA_BILLING_QUERY=broken)
    request, raw = asyncio.run(_export(database_url, storage_root, people["alice"], config))
    assert request.status == "failed"
    error = (request.meta or {}).get("error", "")
    assert error == (
        "personal data: the billing section could not be read (its query failed: UndefinedColumn)"
    ), error
    assert "postgresql" not in error and provider_db not in error  # no URL, no password
    assert raw is None  # nothing delivered, not even the 100,000 usage rows before it


@pytest.mark.postgres
def test_a_query_missing_a_column_fails_naming_it(
    database_url: str, provider_db: str, people: dict[str, str], tmp_path: Path, storage_root: Path
) -> None:
    config = load_config(
        None,
        env=provider_env(
            provider_db,
            FERRY_PERSONAL_DATA_USAGE_QUERY="SELECT bkt_name FROM acct_usage "
            "WHERE account_email = :email",
        ),
    )
    request, raw = asyncio.run(_export(database_url, storage_root, people["alice"], config))
    assert request.status == "failed"
    error = (request.meta or {}).get("error", "")
    assert "usage section could not be read" in error and "bucket" in error, error
    assert raw is None


@pytest.mark.postgres
async def test_a_query_that_writes_is_refused_by_the_read_only_transaction(
    provider_db: str, people: dict[str, str], database_url: str
) -> None:
    spec = SourceSpec(
        "usage",
        kind="sql",
        url=provider_db,
        query="WITH gone AS (DELETE FROM acct_usage WHERE account_email = :email RETURNING *) "
        "SELECT * FROM gone",
    )
    engine = create_engine(database_url)
    try:
        source = build_sources(session_factory(engine), [spec])["usage"]
        with pytest.raises(SourceFailed, match="usage section could not be read"):
            [row async for row in source.rows("usage", _subject(people["alice"]))]
    finally:
        await engine.dispose()
    check = sa.create_engine(provider_db, poolclass=sa.NullPool)
    try:
        with check.connect() as conn:
            left = conn.execute(
                sa.text("SELECT count(*) FROM acct_usage WHERE account_email = :email"),
                {"email": people["alice"]},
            ).scalar()
    finally:
        check.dispose()
    assert left == ROWS


def _subject(email: str) -> Subject:
    return Subject(uuid.uuid4(), email)
