"""Pull receipts: which of the wanted objects a destination has fetched in full.

The gateway audits every GetObject with its status, bytes sent and Range header. An object
counts as fetched when one 200 delivered all of it, or 206 answers together covered every
byte (clients fetch big objects in ranged parts, and resume). Rows are read in a streaming
query; only fetched keys are held in memory, the wanted list is streamed past them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditLog
from portability.requests import iso

MAX_MISSING = 100
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")

Fetch = tuple[int, str | None, int]  # status, Range header, bytes sent


async def fetches(
    session: AsyncSession, credential_ids: Iterable[uuid.UUID]
) -> dict[tuple[str, str], list[Fetch]]:
    ids = list(credential_ids)
    found: dict[tuple[str, str], list[Fetch]] = {}
    if not ids:
        return found
    result = await session.stream(
        select(AuditLog.bucket, AuditLog.key, AuditLog.status, AuditLog.range, AuditLog.bytes)
        .where(
            AuditLog.credential_id.in_(ids),
            AuditLog.action == "GetObject",
            AuditLog.status.in_((200, 206)),
        )
        .execution_options(yield_per=1000)
    )
    async for bucket, key, status, header, sent in result:
        if bucket is not None and key is not None:
            found.setdefault((bucket, key), []).append((int(status or 0), header, int(sent or 0)))
    return found


def covered(fetched: list[Fetch], size: int) -> bool:
    """True when the fetches together delivered bytes 0..size-1."""
    spans: list[tuple[int, int]] = []
    for status, header, sent in fetched:
        if status == 200:
            if sent >= size:
                return True
            spans.append((0, sent))
            continue
        match = _RANGE.match(header or "")
        if match is None:
            continue
        first, last = match.groups()
        if first:
            start = int(first)
        elif last:
            start = max(0, size - int(last))  # a suffix range: the last N bytes
        else:
            continue
        spans.append((start, start + sent))
    reached = 0
    for start, end in sorted(spans):
        if start > reached:
            return False
        reached = max(reached, end)
        if reached >= size:
            return True
    return size == 0 and bool(fetched)


async def build_receipt(
    session: AsyncSession,
    credential_ids: Iterable[uuid.UUID],
    wanted: AsyncIterable[tuple[str, str, int]],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Counts of wanted (bucket, key, size) objects fetched in full, and the first missing."""
    seen = await fetches(session, credential_ids)
    total = total_bytes = done = done_bytes = missing_count = 0
    missing: list[dict[str, Any]] = []
    async for bucket, key, size in wanted:
        total += 1
        total_bytes += size
        if covered(seen.get((bucket, key), []), size):
            done += 1
            done_bytes += size
        else:
            missing_count += 1
            if len(missing) < MAX_MISSING:
                missing.append({"bucket": bucket, "key": key, "size": size})
    return {
        "checked_at": iso(now),
        "objects_total": total,
        "objects_fetched": done,
        "bytes_total": total_bytes,
        "bytes_fetched": done_bytes,
        "missing_count": missing_count,
        "missing": missing,
        "complete": total > 0 and missing_count == 0,
    }
