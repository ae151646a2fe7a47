"""Planning: the source listed page by page into work items.

Each page and the cursor after it are stored in one transaction, so memory stays flat in
the object count and a planner that crashes is resumed by the next from the last stored
page, adding nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from storage.base import ListPage
from storage.retry import RetryPolicy
from transfer.retry import translate
from transfer.spec import Source, Target
from transfer.store import JobRows


async def plan(
    *,
    request_id: uuid.UUID,
    source: Source,
    target: Target,
    store: JobRows,
    retry: RetryPolicy,
    page_size: int,
    target_is_empty: Callable[[], Awaitable[bool]] | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """List the source into items; returns how many pages were stored by this call."""
    stored = await store.plan_cursor(request_id)
    if stored is None and target_is_empty is not None:
        # Before the first page: an empty target spares every object its HEAD request.
        await store.set_target_empty(request_id, await target_is_empty())
    cursor = stored or ""
    pages = 0
    identity = target.identity
    while not stopping():

        async def listing(after: str = cursor) -> ListPage:
            try:
                return await source.storage.list(
                    source.bucket, prefix=source.prefix, start_after=after, max_keys=page_size
                )
            except Exception as exc:
                raise translate(exc, "source") from exc

        page = await retry.call(f"list {source.bucket}/{source.prefix}", listing)
        rows: list[dict[str, Any]] = [
            {
                "key": obj.key,
                "target_key": target.target_key(source.relative(obj.key)),
                "target": identity,
                "size": obj.size,
                "etag": obj.etag.strip('"'),
            }
            for obj in page.objects
        ]
        following = page.next_start_after or (page.objects[-1].key if page.objects else cursor)
        await store.store_page(request_id, rows, following)
        pages += 1
        if not page.is_truncated or following == cursor:
            break
        cursor = following
    else:
        return pages
    await store.finish_planning(request_id)
    return pages
