"""The manifest: every file of the user (all buckets), with sha256, written as a stream.

A valid JSON document laid out one entry per line, so it can be written and read back as
a stream without a streaming JSON parser:

    {"format":"ferry-manifest","version":1,...,"objects":[
    {"bucket":"b","key":"k","size":1,...},
    ...
    ],"totals":{"objects":1,"bytes":1,"parts":1}}
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from portability.exports.sink import StorageSink, read_object
from storage.base import ObjectInfo, Storage

FORMAT = "ferry-manifest"
VERSION = 1
_OPTIONS = orjson.OPT_UTC_Z


class ManifestWriter:
    def __init__(self, sink: StorageSink, header: dict[str, Any]) -> None:
        self.sink = sink
        self._header = {"format": FORMAT, "version": VERSION, **header}
        self._started = False
        self._first = True
        self.objects = 0
        self.bytes = 0

    async def _start(self) -> None:
        if not self._started:
            self._started = True
            await self.sink.write(
                orjson.dumps(self._header, option=_OPTIONS)[:-1] + b',"objects":['
            )

    async def add(self, entry: dict[str, Any]) -> None:
        await self._start()
        prefix = b"\n" if self._first else b",\n"
        self._first = False
        if not entry.get("error"):
            self.objects += 1
            self.bytes += int(entry.get("size") or 0)
        await self.sink.write(prefix + orjson.dumps(entry, option=_OPTIONS))

    async def finish(self, **totals: Any) -> ObjectInfo:
        await self._start()
        tail = {"objects": self.objects, "bytes": self.bytes, **totals}
        await self.sink.write(b'\n],"totals":' + orjson.dumps(tail, option=_OPTIONS) + b"}\n")
        return await self.sink.close()


async def read_entries(
    storage: Storage, bucket: str, key: str, *, chunk_size: int = 1024 * 1024
) -> AsyncIterator[dict[str, Any]]:
    """The manifest's object entries, one at a time."""
    async for entry in parse_entries(read_object(storage, bucket, key, chunk_size=chunk_size)):
        yield entry


async def parse_entries(chunks: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """The object entries of a manifest arriving as `chunks` (one entry per line)."""
    rest = b""
    async for chunk in chunks:
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(b"{") and not line.startswith(b'{"format"'):
                entry: dict[str, Any] = orjson.loads(line.rstrip(b","))
                yield entry
