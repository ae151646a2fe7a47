"""Deflate with ISA-L, and the choice not to: already-compressed content is stored.

JPEGs, videos, zips and the like do not shrink; deflating them costs CPU for nothing (and
adds a few bytes). :func:`worth_compressing` decides from the name and content type, then from
the first bytes: a known compressed format's magic number, else a trial compression of a
64 KiB sample at ISA-L's fastest level. Tar.gz archives repeat the trial (:func:`shrinks`) on
every chunk of content not known to be compressed, so a file that is part text, part noise
is deflated only where deflate pays.

:class:`GzipStream` writes one gzip file as a series of members (RFC 1952 allows any number,
and gzip, tar and Python read them as one stream): deflated members for compressible runs,
members made of stored deflate blocks for the rest.
"""

from __future__ import annotations

import struct
from pathlib import PurePosixPath

from isal import isal_zlib

PROBE_BYTES = 64 * 1024
_STORED_BLOCK = 65_535
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no mtime, unknown OS
FINAL_EMPTY_STORED = b"\x01\x00\x00\xff\xff"  # ends a deflate stream after stored blocks

_COMPRESSED_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heic",
    "image/heif",
    "image/avif",
    "video/",
    "audio/mpeg",
    "audio/mp4",
    "audio/aac",
    "audio/ogg",
    "audio/flac",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/x-7z-compressed",
    "application/x-rar-compressed",
    "application/vnd.openxmlformats-officedocument.",
    "application/epub+zip",
    "application/java-archive",
)
_COMPRESSED_SUFFIXES = frozenset(
    ".jpg .jpeg .png .gif .webp .heic .heif .avif .mp4 .m4v .mov .mkv .webm .avi .mp3 .m4a "
    ".aac .ogg .opus .flac .zip .gz .tgz .bz2 .xz .zst .7z .rar .docx .xlsx .pptx .odt .ods "
    ".epub .jar .apk .whl".split()
)
_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG",
    b"GIF8",
    b"PK\x03\x04",  # zip and its children (docx, jar, epub)
    b"\x1f\x8b",  # gzip
    b"BZh",
    b"\xfd7zXZ\x00",
    b"\x28\xb5\x2f\xfd",  # zstd
    b"7z\xbc\xaf\x27\x1c",
    b"Rar!",
    b"OggS",
    b"fLaC",
    b"ID3",
)


def worth_compressing(name: str, content_type: str | None, head: bytes) -> bool:
    """False for content that is already compressed (by type, name, magic or a trial)."""
    if len(head) < 512:
        return True  # too small to matter either way; deflate keeps headers compact
    return not known_compressed(name, content_type, head) and shrinks(head)


def known_compressed(name: str, content_type: str | None, head: bytes) -> bool:
    """True when the type, name or magic number says the content is already compressed."""
    ctype = (content_type or "").lower()
    if any(ctype.startswith(t) for t in _COMPRESSED_TYPES):
        return True
    if PurePosixPath(name).suffix.lower() in _COMPRESSED_SUFFIXES:
        return True
    if head.startswith(_MAGIC) or head[4:8] in (b"ftyp", b"moov"):
        return True
    return head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"AVI ")


def shrinks(data: bytes | memoryview) -> bool:
    """Whether a trial deflate of the first 64 KiB at ISA-L's fastest level saves 10%."""
    sample = data[:PROBE_BYTES]
    packed = isal_zlib.compress(sample, 0, -15)
    return len(packed) < 0.9 * len(sample)


def deflater(level: int) -> isal_zlib.Compress:
    """A raw deflate stream (no zlib or gzip framing) at an ISA-L level (0..3)."""
    return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)


def stored_blocks(data: bytes | memoryview) -> bytes:
    """`data` as non-final stored deflate blocks (each starts byte-aligned)."""
    view = memoryview(data)
    out = bytearray()
    for start in range(0, len(view), _STORED_BLOCK):
        block = view[start : start + _STORED_BLOCK]
        out += struct.pack("<BHH", 0, len(block), 0xFFFF ^ len(block))
        out += block
    return bytes(out)


class GzipStream:
    """One gzip file written as members: `write(data, compress)`, then `close()`."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._mode: bool | None = None  # None: no member open; True: deflate; False: stored
        self._deflate: isal_zlib.Compress | None = None
        self._crc = 0
        self._size = 0

    def write(self, data: bytes | memoryview, compress: bool) -> bytes:
        out = b""
        if self._mode is not compress:
            out = self._end_member() + _GZIP_HEADER
            self._mode = compress
            self._deflate = deflater(self.level) if compress else None
        if not data:
            return out
        self._crc = isal_zlib.crc32(data, self._crc)
        self._size += len(data)
        if self._deflate is not None:
            return out + self._deflate.compress(data)
        return out + stored_blocks(data)

    def _end_member(self) -> bytes:
        if self._mode is None:
            return b""
        body = self._deflate.flush() if self._deflate is not None else FINAL_EMPTY_STORED
        trailer = struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)
        self._mode, self._deflate, self._crc, self._size = None, None, 0, 0
        return body + trailer

    def close(self) -> bytes:
        return self._end_member()
