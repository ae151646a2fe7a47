"""A personal-data section read from the provider's own database: one read-only query.

    [personal_data.usage]
    url = "postgresql+psycopg://ferry_ro@billing-db/billing"
    query = "SELECT … FROM acct_usage WHERE account_email = :email ORDER BY …"
    columns = { period_start = "window_from", … }

The query is the operator's; the person's values reach it only as bound parameters
(`:email`, `:user_id`), never spliced into its text, and a query that names neither is
refused (it would hand one person everybody's rows). It runs in a read-only transaction
(PostgreSQL `SET TRANSACTION READ ONLY`, SQLite `PRAGMA query_only`), and its rows stream
through a server-side cursor, so memory does not grow with their number. Columns are
mapped to the schema's fields by `columns` (schema field = column), else by name.

Whatever goes wrong (unreachable server, a query that fails, a missing column) is a
SourceFailed naming the section; the details, never the URL, go to the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from portability.exports.sources import SourceFailed, SourceSpec, Subject

PARAMETERS = frozenset({"email", "user_id"})
YIELD_PER = 2000
_SELECT = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)

log = logging.getLogger("ferry.exports.sql_source")


class SqlSource:
    def __init__(self, spec: SourceSpec) -> None:
        if not spec.url or not spec.query:
            raise ValueError(f"personal_data.{spec.section}: a sql source needs url and query")
        if not _SELECT.match(spec.query) or ";" in spec.query.strip().rstrip(";"):
            raise ValueError(f"personal_data.{spec.section}.query: must be one SELECT statement")
        statement = sa.text(spec.query)
        names = set(statement.compile().params)
        if not names & PARAMETERS:
            raise ValueError(
                f"personal_data.{spec.section}.query: must select by :email or :user_id"
            )
        if names - PARAMETERS:
            unknown = ", ".join(sorted(":" + n for n in names - PARAMETERS))
            raise ValueError(
                f"personal_data.{spec.section}.query: unknown parameter(s) {unknown} "
                "(only :email and :user_id are bound)"
            )
        from portability.exports.personal import fields

        strange = set(spec.columns) - set(fields(spec.section))
        if strange:
            raise ValueError(
                f"personal_data.{spec.section}.columns: no field(s) "
                f"{', '.join(sorted(strange))} in this section (it has "
                f"{', '.join(fields(spec.section))})"
            )
        try:
            self._url = sa.make_url(spec.url)
        except sa.exc.ArgumentError:
            raise ValueError(f"personal_data.{spec.section}.url: not a database URL") from None
        self.spec = spec
        self._statement = statement
        self._names = names

    def __repr__(self) -> str:
        return f"SqlSource({self.spec.section!r}, {self._url.render_as_string()!r})"

    async def rows(self, section: str, subject: Subject) -> AsyncIterator[Mapping[str, Any]]:
        params = {"email": subject.email, "user_id": str(subject.id)}
        params = {k: v for k, v in params.items() if k in self._names}
        # A provider database that does not answer fails the section, not the worker's lease.
        connect_args = (
            {"connect_timeout": 10} if self._url.get_backend_name() == "postgresql" else {}
        )
        engine = create_async_engine(self._url, poolclass=sa.NullPool, connect_args=connect_args)
        try:
            async with engine.connect() as conn:
                await _read_only(conn)
                # A server-side cursor read in batches. (`yield_per` as an execution option
                # of a text() statement kept every row: 30 MB for 100,000 rows, not 1 MB.)
                result = await conn.stream(self._statement, params)
                try:
                    mapping = self._mapping(section, tuple(result.keys()))
                    async for partition in result.partitions(YIELD_PER):
                        for row in partition:
                            yield {field: row[index] for field, index in mapping.items()}
                finally:
                    await result.close()
        except SourceFailed:
            raise
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            detail = str(getattr(exc, "orig", None) or exc).splitlines()[0][:300]
            log.error("personal data: the %s query failed: %s", section, detail)
            raise SourceFailed(
                section, f"its query failed: {type(getattr(exc, 'orig', exc)).__name__}"
            ) from None
        finally:
            await engine.dispose()

    def _mapping(self, section: str, columns: tuple[str, ...]) -> dict[str, int]:
        """Schema field -> the column's index in each row."""
        from portability.exports.personal import fields

        index = {name: i for i, name in enumerate(columns)}
        mapping, missing = {}, []
        for field in fields(section):
            column = self.spec.columns.get(field, field)
            if column in index:
                mapping[field] = index[column]
            else:
                missing.append(f"{column} (for {field})" if column != field else column)
        if missing:
            raise SourceFailed(section, f"its query returns no column {', '.join(missing)}")
        return mapping


async def _read_only(conn: AsyncConnection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
    elif dialect == "sqlite":
        await conn.execute(sa.text("PRAGMA query_only = ON"))
