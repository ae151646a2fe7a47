"""Checks and normalisation shared by every backend: bucket names, metadata, headers, ranges.

Each backend runs its input through these so that the same call behaves the same everywhere:
a name the local backend accepts is one an S3 server accepts too, and metadata comes back
under the same (lower-case) names whichever backend stored it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from storage.exceptions import InvalidBucketName, InvalidRange

META_PREFIX = "x-amz-meta-"  # the header prefix of S3 user metadata
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 answers for an object stored without one

# The response headers S3 stores with an object besides Content-Type, in their canonical
# spelling. ObjectInfo.headers uses exactly these names.
STANDARD_HEADERS: tuple[str, ...] = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
_STANDARD_BY_LOWER = {name.lower(): name for name in STANDARD_HEADERS}

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# Printable ASCII plus space and tab: what survives an HTTP/1.1 header unchanged on every
# server we talk to.
_VALUE_RE = re.compile(r"[\t\x20-\x7e]*")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")

# The largest value a signed 64-bit column holds: every count, size and rate we store fits.
INT64_MAX = 2**63 - 1


def check_bucket_name(name: str) -> str:
    """Return `name` if it follows S3's rules for new buckets, else raise InvalidBucketName.

    The rules also guarantee a name is a single harmless path component (no `/`, `.`, `..`),
    which the local backend relies on.
    """
    if not _BUCKET_RE.fullmatch(name):
        raise InvalidBucketName(
            f"invalid bucket name {name!r}: 3 to 63 characters of a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or ".-" in name or "-." in name:
        raise InvalidBucketName(f"invalid bucket name {name!r}: adjacent '.' and '-'")
    if name.startswith("xn--") or name.endswith(("-s3alias", "--ol-s3")):
        raise InvalidBucketName(f"invalid bucket name {name!r}: reserved prefix or suffix")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise InvalidBucketName(f"invalid bucket name {name!r}: looks like an IP address")


def clean_content_type(content_type: str | None) -> str:
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    _check_value("Content-Type", content_type)
    return content_type


def clean_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """User metadata with lower-case names (as S3 returns them), validated for HTTP transport."""
    cleaned: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        lower = name.lower()
        if not _TOKEN_RE.fullmatch(lower):
            raise ValueError(f"metadata name {name!r} is not an HTTP token")
        _check_value(name, value)
        cleaned[lower] = value
    return cleaned


def clean_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The standard headers under their canonical names; any other name is a caller bug."""
    cleaned: dict[str, str] = {}
    for name, value in (headers or {}).items():
        canonical = _STANDARD_BY_LOWER.get(name.lower())
        if canonical is None:
            raise ValueError(
                f"header {name!r} cannot be stored with an object; "
                f"use one of {', '.join(STANDARD_HEADERS)}"
            )
        _check_value(name, value)
        cleaned[canonical] = value
    return cleaned


def parse_decimal(text: str, *, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """`text` as a non-negative decimal integer within [minimum, maximum], else ValueError.

    The one way Ferry reads a number from the wire (query strings, headers, form fields):
    ASCII digits only, so neither "²" (which `str.isdigit` accepts and `int` refuses) nor
    "+1", " 1", "1_0" or a 4,000-digit string reaches `int`.
    """
    if not _DIGITS_RE.fullmatch(text):
        raise ValueError(f"{text[:40]!r} is not a whole number of up to 20 digits")
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(f"{value} is not between {minimum} and {maximum}")
    return value


def resolve_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """The inclusive byte span an HTTP-style range selects from an object of `size` bytes.

    `start=None, end=N` is a suffix range (the last N bytes). Raises InvalidRange when the range
    selects nothing, as S3 answers 416 then; an empty object is served whole only without a
    range.
    """
    if start is None and end is None:
        return 0, size - 1
    if start is None:
        assert end is not None
        if end <= 0 or size == 0:
            raise InvalidRange(f"suffix range of {end} bytes on a {size}-byte object")
        return max(0, size - end), size - 1
    if start < 0 or (end is not None and end < start):
        raise InvalidRange(f"malformed range {start}-{'' if end is None else end}")
    if start >= size:
        raise InvalidRange(f"range starts at byte {start} of a {size}-byte object")
    last = size - 1 if end is None else min(end, size - 1)
    return start, last


def _check_value(name: str, value: str) -> None:
    if not _VALUE_RE.fullmatch(value):
        raise ValueError(f"value of {name!r} must be printable ASCII")
