"""Access audit off the response path: rows queue in memory and are written in batches.

Each flush inserts the batch's audit rows and adds the batch's totals to each credential's
counters (bytes, whole objects, requests, last use) in one transaction. A full queue drops
the oldest-waiting rows only after logging it: a slow database must not stall downloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, case, insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import AuditLog, Credential

log = logging.getLogger("ferry.gateway.audit")


@dataclass
class AccessEvent:
    created_at: datetime
    action: str
    status: int
    credential_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    bucket: str | None = None
    key: str | None = None
    range: str | None = None
    bytes: int = 0
    duration_ms: int = 0
    client_addr: str | None = None
    user_agent: str | None = None
    error: str | None = None
    whole_object: bool = False  # a GetObject that delivered the entire object
    details: dict[str, object] = field(default_factory=dict)


_CREDENTIALS = cast(Table, Credential.__table__)
_LAST = bindparam("b_last", type_=_CREDENTIALS.c.last_used_at.type)
_AUDIT = cast(Table, AuditLog.__table__)
_COUNT_USE = (
    update(_CREDENTIALS)
    .where(_CREDENTIALS.c.id == bindparam("b_id"))
    .values(
        bytes_served=_CREDENTIALS.c.bytes_served + bindparam("b_bytes"),
        objects_served=_CREDENTIALS.c.objects_served + bindparam("b_objects"),
        requests_served=_CREDENTIALS.c.requests_served + bindparam("b_requests"),
        last_used_at=case(
            (_CREDENTIALS.c.last_used_at.is_(None), _LAST),
            (_CREDENTIALS.c.last_used_at < _LAST, _LAST),
            else_=_CREDENTIALS.c.last_used_at,
        ),
    )
)


# On PostgreSQL a batch goes as one array per column, unnested into rows: one statement text
# whatever the batch's size, which the driver parses once. Rows of VALUES made a new text
# per batch size, and splitting it into parameters again was a seventh of the gateway's CPU
# under bench/load.py. The columns are _row's, in its order.
_PG_INSERT = text(
    "INSERT INTO audit_logs (created_at, user_id, credential_id, actor, action, bucket, key,"
    " status, bytes, duration_ms, client_addr, user_agent, range, details)"
    " SELECT * FROM unnest(CAST(:created_at AS timestamptz[]), CAST(:user_id AS uuid[]),"
    " CAST(:credential_id AS uuid[]), CAST(:actor AS text[]), CAST(:action AS text[]),"
    " CAST(:bucket AS text[]), CAST(:key AS text[]), CAST(:status AS int4[]),"
    " CAST(:bytes AS int8[]), CAST(:duration_ms AS int4[]), CAST(:client_addr AS text[]),"
    " CAST(:user_agent AS text[]), CAST(:range AS text[]), CAST(:details AS jsonb[]))"
)


def _row(e: AccessEvent) -> dict[str, object]:
    return {
        "created_at": e.created_at,
        "user_id": e.user_id,
        "credential_id": e.credential_id,
        "actor": "gateway",
        "action": _clean(e.action),
        "bucket": _clean(e.bucket),
        "key": _clean(e.key),
        "status": e.status,
        "bytes": e.bytes,
        "duration_ms": e.duration_ms,
        "client_addr": _clean(e.client_addr),
        "user_agent": _clean(e.user_agent),
        "range": _clean(e.range),
        "details": {**e.details, **({"error": e.error} if e.error else {})} or None,
    }


def _pg_columns(rows: list[dict[str, object]]) -> dict[str, list[object]]:
    columns: dict[str, list[object]] = {name: [row[name] for row in rows] for name in rows[0]}
    columns["details"] = [None if d is None else json.dumps(d) for d in columns["details"]]
    return columns


def _clean(value: str | None) -> str | None:
    """Text as PostgreSQL stores it: no NUL, no lone surrogates from undecodable bytes.

    Without this one hostile request would make the whole batch's insert fail.
    """
    if value is None:
        return None
    if value.isascii() and "\x00" not in value:  # nearly every action, key, address, agent
        return value
    text = value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    return text.replace("\x00", "\ufffd")


@dataclass
class _Totals:
    last: datetime
    bytes: int = 0
    objects: int = 0
    requests: int = 0

    def add(self, event: AccessEvent) -> None:
        self.bytes += event.bytes
        self.objects += int(event.whole_object)
        self.requests += 1
        self.last = max(self.last, event.created_at)


class AuditWriter:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        interval: float = 0.25,
        batch: int = 500,
        max_queue: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self._interval = interval
        self._batch = batch
        self._queue: asyncio.Queue[AccessEvent] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def record(self, event: AccessEvent) -> None:
        if self._task is None:
            self.start()
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.error("audit queue full: %d events dropped so far", self.dropped)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()

    async def flush(self) -> None:
        """Write the rows queued when the flush began; rows queued while it writes wait for
        the next round. Draining until empty made a busy gateway chase each new row with a
        batch of its own: batches of two or three rows, one transaction per request, and the
        request's CPU doubled."""
        pending = self._queue.qsize()
        while pending > 0:
            events: list[AccessEvent] = []
            while len(events) < self._batch and pending > 0:
                events.append(self._queue.get_nowait())
                pending -= 1
            try:
                await self._write(events)
            except Exception:
                # Keep serving; the rows are lost, the failure is not silent.
                log.exception("could not write %d audit rows", len(events))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            await self.flush()

    async def _write(self, events: list[AccessEvent]) -> None:
        if not events:
            return
        totals: dict[uuid.UUID, _Totals] = {}
        for e in events:
            if e.credential_id is not None:
                totals.setdefault(e.credential_id, _Totals(last=e.created_at)).add(e)
        async with self._sessions.begin() as session:
            # Elsewhere (SQLite), rows of VALUES in one INSERT, not a driver executemany: the
            # driver thread would take the GIL back for every row, and on a busy event loop
            # each take can wait a switch interval (with the write lock held, 500 rows took
            # 12 s under the load test and revokes queued behind them). RETURNING makes
            # SQLAlchemy do it as "insertmanyvalues": the statement is compiled once and
            # cached, and the rows are spliced in as text.
            connection = await session.connection()
            rows = [_row(e) for e in events]
            if connection.dialect.name == "postgresql":
                await connection.execute(_PG_INSERT, _pg_columns(rows))
            else:
                await connection.execute(insert(_AUDIT).returning(_AUDIT.c.id), rows)
            if totals:
                # Last, and as one executemany in id order: these UPDATEs lock the credential
                # rows until the commit, and a revoke must wait for them. One statement per
                # credential, awaited in turn on a busy loop, held 200 rows for seconds.
                await connection.execute(
                    _COUNT_USE,
                    [
                        {
                            "b_id": credential_id,
                            "b_bytes": t.bytes,
                            "b_objects": t.objects,
                            "b_requests": t.requests,
                            "b_last": t.last,
                        }
                        for credential_id, t in sorted(totals.items())
                    ],
                )
