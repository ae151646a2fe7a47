"""A ZIP (with ZIP64 where sizes or counts need it) written entry by entry into a stream.

Each entry is a local header, the data (deflated by ISA-L or stored) and a data descriptor,
since sizes and CRC are known only afterwards; the central directory follows the entries.
The central directory grows with the entry count, so :meth:`ZipEncoder.end` hands each
record back to the caller, which spools them (to storage) and writes them out at the end:
memory stays flat however many entries there are.

Names are UTF-8 (flag bit 11); modification times go in as DOS time and as an extended
timestamp (UTC), which Info-ZIP's unzip restores.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from isal import isal_zlib

from portability.exports.compress import FINAL_EMPTY_STORED, deflater, stored_blocks

_LOCAL = 0x04034B50
_DESCRIPTOR = 0x08074B50
_CENTRAL = 0x02014B50
_END64 = 0x06064B50
_LOCATOR64 = 0x07064B50
_END = 0x06054B50
_FLAGS = 0x0008 | 0x0800  # data descriptor follows; names are UTF-8
_MADE_BY = (3 << 8) | 45  # Unix, spec 4.5
_MODE = 0o100644 << 16
_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
# Entries at least this large get ZIP64 sizes from the start: deflate may grow data a little.
ZIP64_THRESHOLD = 0xF000_0000


def _dos_time(when: datetime) -> tuple[int, int]:
    when = when.astimezone(UTC)
    if when.year < 1980:
        return 0, (0 << 9) | (1 << 5) | 1
    time = (when.hour << 11) | (when.minute << 5) | (when.second // 2)
    date = ((min(when.year, 2107) - 1980) << 9) | (when.month << 5) | when.day
    return time, date


class ZipEncoder:
    def __init__(self, level: int = 1, *, force_zip64: bool = False) -> None:
        self.level = level
        self.force_zip64 = force_zip64
        self.offset = 0  # bytes written so far
        self.entries = 0
        self._entry: dict[str, object] = {}
        self._deflate: isal_zlib.Compress | None = None
        self._crc = 0
        self._usize = 0
        self._csize = 0

    def _out(self, data: bytes) -> bytes:
        self.offset += len(data)
        return data

    def begin(
        self, path: str, size: int, mtime: datetime, compress: bool, *, adaptive: bool = False
    ) -> bytes:
        """Start an entry. `adaptive`: a deflate entry whose chunks may each be deflated or
        stored (see `data`), starting as `compress` says."""
        name = path.encode("utf-8")
        zip64 = self.force_zip64 or size >= ZIP64_THRESHOLD
        method = 8 if compress or adaptive else 0
        time, date = _dos_time(mtime)
        stamp = int(mtime.timestamp()) & _U32
        extra = struct.pack("<HHBI", 0x5455, 5, 1, stamp)
        if zip64:
            extra = struct.pack("<HHQQ", 0x0001, 16, 0, 0) + extra
        header = struct.pack(
            "<IHHHHHIIIHH",
            _LOCAL,
            45 if zip64 else 20,
            _FLAGS,
            method,
            time,
            date,
            0,
            _U32 if zip64 else 0,
            _U32 if zip64 else 0,
            len(name),
            len(extra),
        )
        self._entry = {
            "name": name,
            "zip64": zip64,
            "method": method,
            "time": time,
            "date": date,
            "stamp": stamp,
            "offset": self.offset,
        }
        self._deflate = deflater(self.level) if compress else None
        self._crc = self._usize = self._csize = 0
        return self._out(header + name + extra)

    def data(self, chunk: bytes, compress: bool | None = None) -> bytes:
        """Append entry data; in a deflate entry `compress` switches, from this chunk on,
        between deflated and stored deflate blocks (one stream: readers see no seam)."""
        self._crc = isal_zlib.crc32(chunk, self._crc)
        self._usize += len(chunk)
        deflate_entry = self._entry["method"] == 8
        out = b""
        if deflate_entry and compress is not None and compress != (self._deflate is not None):
            if self._deflate is not None:
                # Byte-aligned, the stream left open: stored blocks can follow.
                out = self._deflate.flush(isal_zlib.Z_SYNC_FLUSH)
                self._deflate = None
            else:
                # A fresh compressor, so no back-reference reaches across the stored run.
                self._deflate = deflater(self.level)
        if self._deflate is not None:
            out += self._deflate.compress(chunk)
        else:
            out += stored_blocks(chunk) if deflate_entry else chunk
        self._csize += len(out)
        return self._out(out)

    def end(self) -> tuple[bytes, bytes]:
        """(bytes for the stream, this entry's central directory record for the spool)."""
        if self._deflate is not None:
            tail = self._deflate.flush()
        else:
            tail = FINAL_EMPTY_STORED if self._entry["method"] == 8 else b""
        self._csize += len(tail)
        e = self._entry
        crc = self._crc & _U32
        if e["zip64"]:
            descriptor = struct.pack("<IIQQ", _DESCRIPTOR, crc, self._csize, self._usize)
        elif self._csize > _U32 or self._usize > _U32:
            raise ValueError("entry outgrew 4 GiB without ZIP64: raise ZIP64_THRESHOLD margin")
        else:
            descriptor = struct.pack("<IIII", _DESCRIPTOR, crc, self._csize, self._usize)
        self.entries += 1
        return self._out(tail + descriptor), self._central(crc)

    def _central(self, crc: int) -> bytes:
        e = self._entry
        name = e["name"]
        assert isinstance(name, bytes)
        offset = e["offset"]
        assert isinstance(offset, int)
        # ZIP64 fields appear in this order, each only if its 32-bit field says 0xFFFFFFFF.
        wide = bool(e["zip64"])
        usize_field = _U32 if wide else self._usize
        csize_field = _U32 if wide else self._csize
        offset_field = _U32 if wide or offset >= _U32 else offset
        values = [self._usize, self._csize] if wide else []
        if offset_field == _U32:
            values.append(offset)
        extra = b""
        if values:
            extra = struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values)
        extra += struct.pack("<HHBI", 0x5455, 5, 1, e["stamp"])
        return (
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                _CENTRAL,
                _MADE_BY,
                45 if values else 20,
                _FLAGS,
                e["method"],
                e["time"],
                e["date"],
                crc,
                csize_field,
                usize_field,
                len(name),
                len(extra),
                0,
                0,
                0,
                _MODE,
                offset_field,
            )
            + name
            + extra
        )

    def finish(self, central_offset: int, central_size: int) -> bytes:
        """The end records, once the spooled central directory has been written out."""
        self.offset = central_offset + central_size
        count = self.entries
        zip64 = self.force_zip64 or count >= _U16 or central_offset >= _U32 or central_size >= _U32
        out = b""
        if zip64:
            end64_offset = self.offset
            out += struct.pack(
                "<IQHHIIQQQQ",
                _END64,
                44,
                _MADE_BY,
                45,
                0,
                0,
                count,
                count,
                central_size,
                central_offset,
            )
            out += struct.pack("<IIQI", _LOCATOR64, 0, end64_offset, 1)
        out += struct.pack(
            "<IHHHHIIH",
            _END,
            0,
            0,
            min(count, _U16),
            min(count, _U16),
            min(central_size, _U32),
            min(central_offset, _U32),
            0,
        )
        return self._out(out)
