"""GetObject and HeadObject semantics: ranges, conditionals and the headers S3 sends."""

from __future__ import annotations

import re
from collections.abc import Mapping

from gateway.httpdate import parse_http_date
from storage.base import ObjectInfo
from storage.httpdates import format_http_date
from storage.validation import parse_decimal

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")

# Presigned URLs may ask for these response headers to be set (S3's response-* overrides).
OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def parse_range(value: str | None) -> tuple[int | None, int | None] | None:
    """(start, end) for storage.get, or None when there is no usable single range.

    As S3 does, a malformed or multi-range header is ignored and the whole object is served.
    """
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    try:
        if not first:
            return None, parse_decimal(last)
        start, end = parse_decimal(first), (parse_decimal(last) if last else None)
    except ValueError:
        return None  # more than 20 digits: no object is that large; served whole
    if end is not None and end < start:
        return None
    return start, end


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return etag in wanted


def check_conditions(headers: Mapping[str, str], info: ObjectInfo) -> int | None:
    """None to serve, 304 Not Modified, or 412 Precondition Failed (S3's order of checks)."""
    modified = info.last_modified.replace(microsecond=0)
    if_match = headers.get("if-match")
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            return 412
    else:
        since = parse_http_date(headers.get("if-unmodified-since"))
        if since is not None and modified > since:
            return 412
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        if _etag_matches(if_none_match, info.etag):
            return 304
    else:
        since = parse_http_date(headers.get("if-modified-since"))
        if since is not None and modified <= since:
            return 304
    return None


def object_headers(
    info: ObjectInfo, query: Mapping[str, str], *, overrides_allowed: bool
) -> dict[str, str]:
    headers = {
        "etag": f'"{info.etag}"',
        "last-modified": format_http_date(info.last_modified),
        "accept-ranges": "bytes",
        "content-type": info.content_type,
    }
    for name, value in info.headers.items():
        headers[name.lower()] = value
    for name, value in info.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    if overrides_allowed:
        for param, header in OVERRIDES.items():
            if param in query:
                headers[header] = query[param]
    return headers
