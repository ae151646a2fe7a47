"""A tar.gz written entry by entry into a byte stream: POSIX pax headers, gzip via ISA-L.

Pure and synchronous: each call returns the bytes to append. The caller streams them out and
may run the calls in a worker thread (ISA-L and hashlib release the GIL).
"""

from __future__ import annotations

import tarfile
from datetime import datetime

from portability.exports.compress import GzipStream

BLOCK = 512
RECORD = 20 * BLOCK  # what tar pads the archive to


class TarGzEncoder:
    def __init__(self, level: int = 1) -> None:
        self._gzip = GzipStream(level)
        self._tar_offset = 0  # bytes of uncompressed tar written
        self._remaining = 0
        self._compress = True
        self.out_bytes = 0

    def _out(self, data: bytes) -> bytes:
        self.out_bytes += len(data)
        return data

    def begin(
        self, path: str, size: int, mtime: datetime, compress: bool, *, adaptive: bool = False
    ) -> bytes:
        # `adaptive` needs nothing here: a gzip member ends wherever `data` switches.
        info = tarfile.TarInfo(path)
        info.size = size
        info.mtime = int(mtime.timestamp())
        info.mode = 0o644
        info.type = tarfile.REGTYPE
        info.uname = info.gname = ""
        # pax: names longer than 100 bytes and non-ASCII names travel exactly (UTF-8).
        header = info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")
        self._remaining, self._compress = size, compress
        self._tar_offset += len(header)
        return self._out(self._gzip.write(header, compress))

    def data(self, chunk: bytes, compress: bool | None = None) -> bytes:
        """Append entry data; `compress` overrides the entry's choice from this chunk on."""
        if len(chunk) > self._remaining:
            raise ValueError("more data than the entry's announced size")
        if compress is not None:
            self._compress = compress
        self._remaining -= len(chunk)
        self._tar_offset += len(chunk)
        return self._out(self._gzip.write(chunk, self._compress))

    def end(self) -> bytes:
        if self._remaining:
            raise ValueError(f"entry ended {self._remaining} bytes short")
        pad = -self._tar_offset % BLOCK
        self._tar_offset += pad
        return self._out(self._gzip.write(b"\0" * pad, self._compress) if pad else b"")

    def finish(self) -> bytes:
        trailer = b"\0" * (2 * BLOCK)
        trailer += b"\0" * (-(self._tar_offset + len(trailer)) % RECORD)
        return self._out(self._gzip.write(trailer, True) + self._gzip.close())
