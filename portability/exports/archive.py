"""Archives of a user's data, streamed into storage: tar.gz or zip, split into parts, bagged.

Each part is a complete archive holding one BagIt bag, `ferry-export-<id>-part-NNN/`:

    bagit.txt
    data/personal-data.json          (part 1, when personal data is included)
    data/files/<bucket>/<safe path>  (every object, names from names.safe_path)
    data/manifest.json               (last part: every file, its sha256, path and part)
    manifest-sha256.txt, bag-info.txt, tagmanifest-sha256.txt

A part is closed once it has reached `part_size` and a new one begun; objects are never split,
so a part holding one big object is as large as that object. Bytes flow from a storage read
through sha256 and the encoder into a multipart upload, as a pipeline: the next chunk is read
while the current one is hashed (one worker thread) and deflated (another; ISA-L and hashlib
release the GIL, so both cores work) and the previous one is uploaded. What must be known at
the end (bag manifests, zip central directories, the personal-data document's size) is spooled
(memory, then storage): memory does not depend on the archive's size or its entry count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from db.models import Bucket
from portability.exports import bagit
from portability.exports.compress import PROBE_BYTES, known_compressed, shrinks, worth_compressing
from portability.exports.links import WORK_DIR, object_key
from portability.exports.listing import SourceObject
from portability.exports.manifest import ManifestWriter
from portability.exports.names import safe_path
from portability.exports.settings import ExportSettings
from portability.exports.sink import Spool, StorageSink, read_object
from portability.exports.tar_writer import TarGzEncoder
from portability.exports.zip_writer import ZipEncoder
from storage.base import Storage
from storage.exceptions import NoSuchKey

FORMATS = {"tar.gz": "application/gzip", "zip": "application/zip"}
PAYLOAD, TAG, OTHER = "payload", "tag", "other"  # roles of an entry in the bag
_INLINE = 64 * 1024  # below this, hashing and encoding are cheaper than a thread hop

ProgressFn = Callable[[int, int], Awaitable[None]]  # (bytes done, objects done)


@dataclass(frozen=True)
class Delivered:
    """An object the user downloads: a part, the manifest, the personal-data document."""

    key: str  # in the user's export bucket
    name: str
    size: int
    sha256: str


@dataclass
class ArchiveResult:
    parts: list[Delivered]
    manifest: Delivered | None
    objects: int
    bytes: int
    skipped: int


@dataclass
class _Part:
    number: int
    name: str
    root: str
    sink: StorageSink
    encoder: TarGzEncoder | ZipEncoder
    bag: Spool
    central: Spool | None
    sha: Any = field(default_factory=hashlib.sha256)
    tags: list[tuple[str, str]] = field(default_factory=list)
    payload_bytes: int = 0
    payload_files: int = 0


class ArchiveBuilder:
    def __init__(
        self,
        storage: Storage,
        *,
        settings: ExportSettings,
        export_bucket: Bucket,
        request_id: uuid.UUID,
        archive_format: str,
        now: datetime,
        progress: ProgressFn,
        force_zip64: bool = False,
    ) -> None:
        if archive_format not in FORMATS:
            raise ValueError(f"unknown archive format {archive_format!r}")
        self.storage = storage
        self.settings = settings
        self.bucket = export_bucket
        self.request_id = request_id
        self.format = archive_format
        self.now = now
        self.progress = progress
        self.force_zip64 = force_zip64
        self.stem = f"ferry-export-{request_id.hex[:8]}"
        self._parts: list[Delivered] = []
        self._open: list[StorageSink | Spool] = []
        self._bytes_done = 0
        self._objects_done = 0

    # public

    async def build(
        self,
        *,
        personal: AsyncIterator[bytes] | None,
        sources: AsyncIterator[SourceObject] | None,
    ) -> ArchiveResult:
        manifest: Delivered | None = None
        skipped = objects = size = 0
        try:
            personal_spool = None
            if personal is not None:
                personal_spool = self._spool("personal-data.json")
                async for chunk in personal:
                    await personal_spool.write(chunk)
            part = self._open_part(1)
            await self._add(part, "bagit.txt", bagit.BAGIT_TXT, role=TAG)
            if personal_spool is not None:
                await self._add_stream(
                    part,
                    "data/personal-data.json",
                    personal_spool.size,
                    self.now,
                    True,
                    personal_spool.replay(chunk_size=self.settings.read_chunk_size),
                )
                await personal_spool.discard()
            if sources is not None:
                writer = ManifestWriter(
                    self._sink("manifest.json", "application/json"),
                    {
                        "generated_at": self.now,
                        "request_id": str(self.request_id),
                        "archive_format": self.format,
                    },
                )
                async for source in sources:
                    if part.sink.size >= self.settings.part_size and part.payload_files:
                        part = await self._next_part(part)
                    entry = await self._add_object(part, source)
                    skipped += 1 if entry.get("error") else 0
                    await writer.add(entry)
                    self._objects_done += 1
                    await self.progress(self._bytes_done, self._objects_done)
                objects, size = writer.objects, writer.bytes
                info = await writer.finish(parts=part.number, skipped=skipped)
                key = writer.sink.key[len(self.bucket.backend_prefix) :]
                manifest = Delivered(key, "manifest.json", info.size, "")
                self._open.remove(writer.sink)
                manifest = await self._add_manifest(part, manifest)
            await self._close_part(part)
            return ArchiveResult(self._parts, manifest, objects, size, skipped)
        except BaseException:
            await self._cleanup(manifest)
            raise

    # parts

    def _key(self, name: str) -> str:
        return self.bucket.backend_prefix + object_key(self.request_id, name)

    def _sink(self, name: str, content_type: str) -> StorageSink:
        sink = StorageSink(
            self.storage,
            self.bucket.backend_bucket,
            self._key(name),
            chunk_size=self.settings.upload_chunk_size,
            content_type=content_type,
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )
        self._open.append(sink)
        return sink

    def _spool(self, name: str) -> Spool:
        spool = Spool(
            self.storage,
            self.bucket.backend_bucket,
            self._key(f"{WORK_DIR}/{name}"),
            limit=self.settings.upload_chunk_size,
        )
        self._open.append(spool)
        return spool

    def _open_part(self, number: int) -> _Part:
        root = f"{self.stem}-part-{number:03d}"
        name = f"{root}.{self.format}"
        level = self.settings.compression_level
        encoder: TarGzEncoder | ZipEncoder
        if self.format == "zip":
            encoder = ZipEncoder(level, force_zip64=self.force_zip64)
        else:
            encoder = TarGzEncoder(level)
        return _Part(
            number=number,
            name=name,
            root=root,
            sink=self._sink(name, FORMATS[self.format]),
            encoder=encoder,
            bag=self._spool(f"{root}.manifest-sha256.txt"),
            central=self._spool(f"{root}.central") if self.format == "zip" else None,
        )

    async def _next_part(self, part: _Part) -> _Part:
        await self._close_part(part)
        following = self._open_part(part.number + 1)
        await self._add(following, "bagit.txt", bagit.BAGIT_TXT, role=TAG)
        return following

    async def _close_part(self, part: _Part) -> None:
        await self._add_stream(
            part,
            "manifest-sha256.txt",
            part.bag.size,
            self.now,
            True,
            part.bag.replay(chunk_size=self.settings.read_chunk_size),
            role=TAG,
        )
        info = bagit.bag_info(
            request_id=str(self.request_id),
            part=part.number,
            payload_bytes=part.payload_bytes,
            payload_files=part.payload_files,
            when=self.now,
        )
        await self._add(part, "bag-info.txt", info, role=TAG)
        await self._add(part, "tagmanifest-sha256.txt", bagit.tag_manifest(part.tags), role=OTHER)
        if isinstance(part.encoder, ZipEncoder):
            assert part.central is not None
            start = part.encoder.offset
            async for chunk in part.central.replay(chunk_size=self.settings.read_chunk_size):
                await self._emit(part, chunk)
            await self._emit(part, part.encoder.finish(start, part.central.size))
        else:
            await self._emit(part, part.encoder.finish())
        await part.sink.close()
        self._open.remove(part.sink)
        for spool in (part.bag, part.central):
            if spool is not None:
                await spool.discard()
                self._open.remove(spool)
        key = part.sink.key[len(self.bucket.backend_prefix) :]
        self._parts.append(Delivered(key, part.name, part.sink.size, part.sha.hexdigest()))

    # entries

    async def _emit(self, part: _Part, data: bytes) -> None:
        if data:
            part.sha.update(data)
            await part.sink.write(data)

    @staticmethod
    def _encode(part: _Part, chunk: bytes, adaptive: bool) -> tuple[bytes, bool]:
        """(output, whether this chunk was deflated)."""
        if adaptive:
            # Where the choice changes a gzip member ends and a new one begins (tar.gz), or a
            # zip entry's deflate stream goes on with stored blocks or a fresh compressor, so
            # mixed content (a disk image, a log with attachments) is deflated only where it
            # shrinks.
            deflated = shrinks(chunk)
            out = part.encoder.data(chunk, deflated)
        else:
            deflated = False
            out = part.encoder.data(chunk)
        part.sha.update(out)
        return out, deflated

    async def _step(
        self, part: _Part, sha: Any, chunk: bytes, adaptive: bool
    ) -> tuple[bytes, bool]:
        if len(chunk) < _INLINE:
            sha.update(chunk)
            return self._encode(part, chunk, False)
        # Two threads, two cores: the entry's sha256 beside deflate and the part's sha256.
        # Both finish before the next chunk starts, so each hash still sees bytes in order.
        hashed = asyncio.ensure_future(asyncio.to_thread(sha.update, chunk))
        try:
            return await asyncio.to_thread(self._encode, part, chunk, adaptive)
        finally:
            await hashed

    async def _add_stream(
        self,
        part: _Part,
        relative: str,
        size: int,
        mtime: datetime,
        compress: bool,
        chunks: AsyncIterator[bytes],
        *,
        role: str = PAYLOAD,
        count: bool = False,
        adaptive: bool = False,
        deflated: list[bool] | None = None,
    ) -> str:
        """Add one entry; returns its sha256. Payload (data/…) goes into the bag manifest.

        `adaptive`: after the first chunk, each chunk is deflated only if a trial says it
        shrinks; `deflated` then collects whether any chunk was.
        """
        path = f"{part.root}/{relative}"
        await self._emit(part, part.encoder.begin(path, size, mtime, compress, adaptive=adaptive))
        sha = hashlib.sha256()
        async with contextlib.aclosing(_read_ahead(chunks)) as ahead:
            first = True
            async for chunk in ahead:
                out, was = await self._step(part, sha, chunk, adaptive and not first)
                first = False
                if was and deflated is not None:
                    deflated.append(True)
                if out:
                    await part.sink.write(out)
                if count:
                    self._bytes_done += len(chunk)
                    await self.progress(self._bytes_done, self._objects_done)
        if isinstance(part.encoder, ZipEncoder):
            assert part.central is not None
            tail, record = part.encoder.end()
            await part.central.write(record)
        else:
            tail = part.encoder.end()
        await self._emit(part, tail)
        digest = sha.hexdigest()
        if role == TAG:
            part.tags.append((relative, digest))
        elif role == PAYLOAD:
            await part.bag.write(bagit.manifest_line(digest, relative))
            part.payload_bytes += size
            part.payload_files += 1
        return digest

    async def _add(self, part: _Part, relative: str, data: bytes, *, role: str = PAYLOAD) -> str:
        async def once() -> AsyncIterator[bytes]:
            yield data

        return await self._add_stream(part, relative, len(data), self.now, True, once(), role=role)

    async def _add_object(self, part: _Part, source: SourceObject) -> dict[str, Any]:
        bucket, info = source.bucket, source.info
        entry: dict[str, Any] = {
            "bucket": bucket.name,
            "key": info.key,
            "size": info.size,
            "etag": info.etag,
            "last_modified": info.last_modified,
            "content_type": info.content_type,
        }
        try:
            stream = await self.storage.get(bucket.backend_bucket, source.backend_key)
        except NoSuchKey:
            # Deleted between listing and reading: say so rather than fail the export.
            return {**entry, "sha256": None, "error": "deleted while the export ran"}
        try:
            current = stream.info
            body = stream.body.__aiter__()
            head = bytearray()
            while len(head) < PROBE_BYTES:
                try:
                    head += await body.__anext__()
                except StopAsyncIteration:
                    break
            compress = worth_compressing(info.key, current.content_type, bytes(head))
            adaptive = not known_compressed(info.key, current.content_type, bytes(head))
            deflated: list[bool] = []
            relative = f"data/files/{bucket.name}/" + safe_path(
                info.key, also_folder=source.also_folder
            )

            async def chunks() -> AsyncIterator[bytes]:
                # Pieces gathered to read_chunk_size with one join (one copy), not appends.
                pieces, held = [bytes(head)], len(head)
                async for piece in body:
                    pieces.append(piece)
                    held += len(piece)
                    if held >= self.settings.read_chunk_size:
                        yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                        pieces, held = [], 0
                if held:
                    yield b"".join(pieces)

            digest = await self._add_stream(
                part,
                relative,
                current.size,
                current.last_modified,
                compress,
                chunks(),
                count=True,
                adaptive=adaptive,
                deflated=deflated,
            )
        finally:
            await stream.aclose()
        return {
            **entry,
            "size": current.size,
            "etag": current.etag,
            "last_modified": current.last_modified,
            "content_type": current.content_type,
            "sha256": digest,
            "part": part.number,
            "path": f"{part.root}/{relative}",
            "compressed": compress or bool(deflated),
        }

    async def _add_manifest(self, part: _Part, manifest: Delivered) -> Delivered:
        chunks = read_object(
            self.storage,
            self.bucket.backend_bucket,
            self.bucket.backend_prefix + manifest.key,
            chunk_size=self.settings.read_chunk_size,
        )
        digest = await self._add_stream(
            part, "data/manifest.json", manifest.size, self.now, True, chunks
        )
        return Delivered(manifest.key, manifest.name, manifest.size, digest)

    async def _cleanup(self, manifest: Delivered | None) -> None:
        for item in reversed(self._open):
            with contextlib.suppress(Exception):
                if isinstance(item, StorageSink):
                    await item.abort()
                else:
                    await item.discard()
        done = [*self._parts, *([manifest] if manifest else [])]
        for delivered in done:
            with contextlib.suppress(Exception):
                await self.storage.delete(
                    self.bucket.backend_bucket, self.bucket.backend_prefix + delivered.key
                )


async def _read_ahead(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """`chunks`, with the next one being read while the caller works on the current one.

    One chunk ahead: reading overlaps hashing and deflating, and memory grows by one chunk.
    """
    source = chunks.__aiter__()
    pending: asyncio.Future[bytes] = asyncio.ensure_future(source.__anext__())
    try:
        while True:
            try:
                chunk = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(source.__anext__())
            yield chunk
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        elif not pending.cancelled():
            pending.exception()  # retrieved: a read-ahead failure after an abort is not news
