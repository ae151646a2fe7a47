"""ListObjectsV2 paging made exact whatever the server's quirks.

The contract (storage.base.Storage.list): a page holds only entries, keys and common prefixes
alike, that sort after `start_after`, so its last entry is the next page's `start_after`; for a
common prefix that means "after everything under it". Servers disagree on that case: moto
skips the prefix, SeaweedFS lists it again for delimiters other than "/" (paging would never
end) and rolls up deeper prefixes separately after a `start_after` inside one. So the client
asks for what it means, and holds the answer to the rules:

- a `start_after` that falls under a common prefix is sent as the greatest possible key under
  that prefix, which every server understands as a plain key bound;
- returned keys and prefixes are rolled up afresh and deduplicated, and common prefixes not
  after `start_after` dropped.

Keys are never dropped: on a server whose order is not S3's (SeaweedFS lists directory by
directory) a key may legitimately follow a greater one, and losing it would be worse than
listing it out of order.
"""

from __future__ import annotations

from storage.base import MAX_KEY_BYTES, ListPage, ObjectInfo
from storage.exceptions import BackendError
from storage.s3_xml import ListResult

# The greatest UTF-8 character of each encoded length (1 to 4 bytes).
_GREATEST = {1: "\x7f", 2: "\u07ff", 3: "\uffff", 4: "\U0010ffff"}


def beyond(prefix: str) -> str:
    """The greatest valid key (at most MAX_KEY_BYTES) that starts with `prefix`.

    Any key under `prefix` sorts at or before it: every byte is the greatest a valid UTF-8 key
    can have at that position and length.
    """
    room = MAX_KEY_BYTES - len(prefix.encode())
    if room <= 0:
        return prefix
    tail = _GREATEST[room % 4] if room % 4 else ""
    return prefix + _GREATEST[4] * (room // 4) + tail


def roll_up(name: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix `name` belongs to under this prefix and delimiter, if any."""
    if not delimiter or not name.startswith(prefix):
        return None
    cut = name.find(delimiter, len(prefix))
    return name[: cut + len(delimiter)] if cut >= 0 else None


def request_start_after(prefix: str, delimiter: str, start_after: str) -> str:
    """The start-after to send: past the whole common prefix `start_after` lies under."""
    common = roll_up(start_after, prefix, delimiter)
    return beyond(common) if common is not None else start_after


def page_from(result: ListResult, prefix: str, delimiter: str, start_after: str) -> ListPage:
    """The server's answer held to the listing rules (see the module docstring)."""
    floor = start_after.encode()
    objects: list[ObjectInfo] = []
    prefixes: dict[str, None] = {}  # ordered set
    for item in result.objects:
        common = roll_up(item.key, prefix, delimiter)
        if common is None:
            objects.append(ObjectInfo(item.key, item.size, item.etag, item.last_modified))
        elif common.encode() > floor:
            prefixes[common] = None
    for listed in result.common_prefixes:
        common = roll_up(listed, prefix, delimiter) or listed
        if common.encode() > floor:
            prefixes[common] = None

    next_start_after = None
    if result.is_truncated:
        names = [o.key for o in objects] + list(prefixes)
        next_start_after = max(names, key=str.encode) if names else None
        if next_start_after is None or next_start_after.encode() <= floor:
            raise BackendError(f"the server's listing does not advance past {start_after!r}")
    return ListPage(objects, list(prefixes), result.is_truncated, next_start_after)
