"""A bucket's top-level folders with object counts and sizes, for the prefix picker."""

from __future__ import annotations

from dataclasses import dataclass

from db.models import Bucket
from storage.base import Storage

SCAN_LIMIT = 20_000  # objects per bucket; beyond this the counts are marked as lower bounds


@dataclass(frozen=True)
class Folder:
    prefix: str  # "photos/"; "" for the objects at the top level
    objects: int
    bytes: int


@dataclass(frozen=True)
class BucketFolders:
    bucket: str
    folders: list[Folder]
    objects: int
    bytes: int
    truncated: bool  # more objects than SCAN_LIMIT: the numbers are "at least"


async def top_folders(
    storage: Storage, bucket: Bucket, *, limit: int = SCAN_LIMIT
) -> BucketFolders:
    """One paged listing of the bucket, summed by first path segment (bounded by `limit`)."""
    base = bucket.backend_prefix
    counts: dict[str, list[int]] = {}
    seen = 0
    start_after = ""
    truncated = False
    while True:
        page = await storage.list(
            bucket.backend_bucket, prefix=base, start_after=start_after, max_keys=1000
        )
        for info in page.objects:
            key = info.key[len(base) :]
            head, slash, _ = key.partition("/")
            entry = counts.setdefault(head + slash if slash else "", [0, 0])
            entry[0] += 1
            entry[1] += info.size
            seen += 1
        if not page.is_truncated or not page.next_start_after:
            break
        if seen >= limit:
            truncated = True
            break
        start_after = page.next_start_after
    folders = [Folder(p, n, size) for p, (n, size) in sorted(counts.items()) if p]
    return BucketFolders(
        bucket=bucket.name,
        folders=folders,
        objects=sum(n for n, _ in counts.values()),
        bytes=sum(size for _, size in counts.values()),
        truncated=truncated,
    )
