"""The user's files, bucket by bucket, page by page: memory does not grow with their number."""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from db.models import Bucket
from storage.base import ObjectInfo, Storage

PAGE = 1000


@dataclass(frozen=True)
class SourceObject:
    bucket: Bucket
    info: ObjectInfo  # key relative to the bucket (backend prefix removed)
    also_folder: bool  # other keys start with key + "/": the archive name needs a suffix

    @property
    def backend_key(self) -> str:
        return self.bucket.backend_prefix + self.info.key


async def iter_objects(storage: Storage, buckets: Iterable[Bucket]) -> AsyncIterator[SourceObject]:
    for bucket in buckets:
        async for obj in _iter_bucket(storage, bucket):
            yield obj


async def _iter_bucket(storage: Storage, bucket: Bucket) -> AsyncIterator[SourceObject]:
    prefix = bucket.backend_prefix
    start = ""
    while True:
        page = await storage.list(
            bucket.backend_bucket, prefix=prefix, start_after=start, max_keys=PAGE
        )
        keys = [o.key[len(prefix) :] for o in page.objects]
        for i, info in enumerate(page.objects):
            probe = keys[i] + "/"
            # Keys are in UTF-8 byte order (= code point order for str): anything under
            # `key/` is the contiguous run starting at the first key >= `key/`.
            j = bisect.bisect_left(keys, probe, i + 1)
            if j < len(keys):
                folder = keys[j].startswith(probe)
            elif page.is_truncated:
                more = await storage.list(bucket.backend_bucket, prefix=prefix + probe, max_keys=1)
                folder = bool(more.objects)
            else:
                folder = False
            yield SourceObject(bucket, dataclasses.replace(info, key=keys[i]), folder)
        if not page.is_truncated or not page.next_start_after:
            return
        start = page.next_start_after


async def totals(storage: Storage, buckets: Iterable[Bucket]) -> tuple[int, int]:
    """(objects, bytes) over the buckets, for progress."""
    count = size = 0
    for bucket in buckets:
        start = ""
        while True:
            page = await storage.list(
                bucket.backend_bucket,
                prefix=bucket.backend_prefix,
                start_after=start,
                max_keys=PAGE,
            )
            count += len(page.objects)
            size += sum(o.size for o in page.objects)
            if not page.is_truncated or not page.next_start_after:
                break
            start = page.next_start_after
    return count, size
