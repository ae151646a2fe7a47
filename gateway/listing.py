"""Listings filtered to a credential's prefixes, paginated as S3 paginates.

A listing may name an ancestor of the allowed prefixes (`prefix=""` when the scope is
`share/photos/`): it then shows only what leads into the scope (`share/`), never a sibling.
Keys under one prefix form one contiguous range in byte order, and the normalised allowed
prefixes are disjoint, so walking them in sorted order and concatenating what each yields
gives a correctly ordered listing without reading anything outside the scope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from storage.base import ObjectInfo, Storage


@dataclass(frozen=True)
class Entry:
    name: str
    info: ObjectInfo | None  # None: a common prefix


@dataclass(frozen=True)
class Page:
    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    last_name: str | None  # the marker / continuation position for the next page


class OutOfScope(Exception):
    """The requested prefix neither lies inside nor leads into the credential's scope."""


def roots(allowed: tuple[str, ...], prefix: str) -> list[str]:
    """The prefixes to list for `prefix`, in order. Raises OutOfScope when there are none."""
    for a in allowed:
        if prefix.startswith(a):
            return [prefix]
    below = [a for a in allowed if a.startswith(prefix)]
    if not below:
        raise OutOfScope(prefix)
    return below


def _rollup(name: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    i = name.find(delimiter, len(prefix))
    return name[: i + len(delimiter)] if i >= 0 else None


class ScopedLister:
    def __init__(self, storage: Storage, backend_bucket: str, backend_prefix: str) -> None:
        self.storage = storage
        self.bucket = backend_bucket
        self.bp = backend_prefix

    async def _exists_under(self, root: str) -> bool:
        page = await self.storage.list(self.bucket, prefix=self.bp + root, max_keys=1)
        return bool(page.objects or page.common_prefixes)

    async def _walk(
        self, root: str, delimiter: str, start_after: str, want: int
    ) -> AsyncIterator[Entry]:
        # `>=`: a marker equal to the root names the object whose key is the root itself,
        # which must not be listed again (pagination would never end).
        after = start_after if start_after >= root else ""
        cut = len(self.bp)
        # The first page asks for about what the client wants (parsing a thousand entries
        # to answer for a hundred was a fifth of the gateway's time under load); later
        # pages, needed only when entries fold into common prefixes, take the most.
        size = min(max(want, 1), 1000)
        while True:
            page = await self.storage.list(
                self.bucket,
                prefix=self.bp + root,
                delimiter=delimiter,
                start_after=self.bp + after if after else "",
                max_keys=size,
            )
            size = 1000
            merged = [Entry(o.key[cut:], o) for o in page.objects]
            merged += [Entry(p[cut:], None) for p in page.common_prefixes]
            merged.sort(key=lambda e: e.name)
            for entry in merged:
                yield entry
            if not page.is_truncated or page.next_start_after is None:
                return
            after = page.next_start_after[cut:]

    async def entries(
        self,
        allowed: tuple[str, ...],
        prefix: str,
        delimiter: str,
        start_after: str,
        want: int = 1000,
    ) -> AsyncIterator[Entry]:
        """Every visible entry after `start_after`, in order (common prefixes rolled up)."""
        last_prefix: str | None = None
        for root in roots(allowed, prefix):
            rest = root[len(prefix) :]
            if delimiter and delimiter in rest:
                # The whole subtree folds into one common prefix; show it only if it exists.
                folded = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if (
                    folded > start_after
                    and folded != last_prefix
                    and await self._exists_under(root)
                ):
                    last_prefix = folded
                    yield Entry(folded, None)
                continue
            async for entry in self._walk(root, delimiter, start_after, want):
                # Roll up relative to the requested prefix, not the root that was listed.
                # The backend already applied start_after, in its own order (SeaweedFS lists
                # in directory order, not byte order), so keys are not filtered again; only a
                # common prefix that the marker itself names is dropped.
                folded_name = _rollup(entry.name, prefix, delimiter)
                if folded_name is None:
                    yield entry
                elif folded_name != last_prefix and not start_after.startswith(folded_name):
                    last_prefix = folded_name
                    yield Entry(folded_name, None)

    async def page(
        self,
        allowed: tuple[str, ...],
        *,
        prefix: str,
        delimiter: str,
        start_after: str,
        max_keys: int,
    ) -> Page:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        last: str | None = None
        truncated = False
        if max_keys > 0:
            count = 0
            # One more than the page holds: it tells whether the listing is truncated.
            entries = self.entries(allowed, prefix, delimiter, start_after, max_keys + 1)
            async for entry in entries:
                if count == max_keys:
                    truncated = True
                    break
                count += 1
                last = entry.name
                if entry.info is None:
                    prefixes.append(entry.name)
                else:
                    objects.append(entry.info)
        else:
            roots(allowed, prefix)  # still refuse an out-of-scope prefix
        cut = len(self.bp)
        if cut:
            objects = [replace(o, key=o.key[cut:]) for o in objects]
        return Page(objects, prefixes, truncated, last)
