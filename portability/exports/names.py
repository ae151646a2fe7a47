"""Safe names inside archives for arbitrary S3 keys.

An S3 key is any UTF-8 string: `../../etc/passwd`, `/abs/path`, `a//b`, `dir/`, a 1,019-byte
segment. Written verbatim into a tar or zip, such names escape the extraction folder, fail to
extract, or collide. :func:`safe_path` maps a key to a relative path that every extractor
(GNU tar, Info-ZIP, Python, Windows) writes inside the folder, and the mapping is injective:

- the escape is `^` and two hex digits per UTF-8 byte; `^` itself becomes `^5E`, so every
  other `^` in a name starts an escape this module made;
- a `/` separates folders only between two non-empty segments; any other `/` (leading,
  trailing, doubled) is escaped as `^2F`: `/abs/path` -> `^2Fabs/path`, `dir/` -> `dir^2F`,
  `a//b` -> `a^2F/b`;
- `.` and `..` segments, control characters, `%`, a backslash and Windows' reserved
  characters (`<>:"|?*`), a trailing dot or space and device names (`CON`, `nul.txt`) are
  escaped;
- a segment longer than 255 bytes (most file systems' limit) is cut and suffixed with `^~`
  and a hash of the whole segment; `^~` never comes out of escaping, so no collision;
- an object whose key is also a folder of other keys (`photos` beside `photos/a.jpg`) gets
  the suffix `^(file)`, equally impossible from escaping.

Why not `%`: BagIt manifests percent-encode `%` (RFC 8493) and the reference validator
(bagit-python) does not decode it; with no `%` in any name, every BagIt tool agrees.
Undo the escapes per segment to get the key back; the manifest records the mapping anyway,
for the shortened names.
"""

from __future__ import annotations

import hashlib
import re

MAX_SEGMENT_BYTES = 255
_CUT_TO = 200
ESCAPE = "^"
FILE_SUFFIX = "^(file)"
_UNSAFE = set('^%\\<>:"|?*\x7f') | {chr(c) for c in range(32)}
_DEVICE = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def _escape_char(c: str) -> str:
    return "".join(f"^{b:02X}" for b in c.encode())


def _escape(part: str) -> str:
    if not any(c in _UNSAFE for c in part):
        return part
    return "".join(_escape_char(c) if c in _UNSAFE else c for c in part)


def _finish_segment(seg: str) -> str:
    if seg in (".", ".."):
        return "^2E" * len(seg)
    if seg.endswith((".", " ")):
        seg = seg[:-1] + _escape_char(seg[-1])
    if _DEVICE.match(seg):
        seg = _escape_char(seg[0]) + seg[1:]
    raw = seg.encode()
    if len(raw) <= MAX_SEGMENT_BYTES:
        return seg
    cut = raw[:_CUT_TO].decode("utf-8", errors="ignore")
    # Do not leave half an escape at the end of the cut.
    tail = cut.rfind(ESCAPE, max(0, len(cut) - 2))
    if tail != -1:
        cut = cut[:tail]
    return f"{cut}^~{hashlib.sha256(raw).hexdigest()[:16]}"


def safe_path(key: str, *, also_folder: bool = False) -> str:
    """The relative path for `key` inside an archive (see the module docstring)."""
    parts = key.split("/")
    segments: list[str] = []
    current = _escape(parts[0])
    for part in parts[1:]:
        if current and part:
            segments.append(current)
            current = _escape(part)
        else:
            current = f"{current}^2F{_escape(part)}"
    if also_folder:
        current += FILE_SUFFIX
    segments.append(current)
    return "/".join(_finish_segment(s) for s in segments)


def is_safe(path: str) -> bool:
    """True if `path` is relative, has no empty, `.` or `..` segment and no backslash."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(s not in ("", ".", "..") for s in path.split("/"))
