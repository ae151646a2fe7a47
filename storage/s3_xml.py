"""The XML documents of the S3 calls the client makes: parsed answers and built requests.

Answers may come from an endpoint a user named (a transfer destination), so they are treated
as hostile: a document with a DTD is refused before parsing (no entity can expand), and an
error's message is cut short and stripped of control characters before anyone sees it.
Element names are matched without their namespace: servers differ in whether they send S3's
`xmlns`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote_plus
from xml.sax.saxutils import escape

from storage.base import PartInfo
from storage.checksums import XML_ELEMENT

MESSAGE_LIMIT = 200  # characters of an endpoint's error message passed on


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class ListResult:
    objects: list[ListedObject]
    common_prefixes: list[str]
    is_truncated: bool


@dataclass(frozen=True)
class PartsResult:
    parts: list[PartInfo]
    is_truncated: bool
    next_marker: int


def parse_error(body: bytes) -> tuple[str, str]:
    """(code, message) of an S3 error document; empty strings when there is none."""
    try:
        root = _parse(body)
    except ET.ParseError:
        return "", ""
    if _local(root.tag) != "Error":
        return "", ""
    return clean_message(_text(root, "Code"), 64), clean_message(_text(root, "Message"))


def is_error(body: bytes) -> bool:
    """Whether a 200 answer is in fact an error (CompleteMultipartUpload can do that)."""
    return b"<Error>" in body[:512] and bool(parse_error(body)[0])


def parse_list_v2(body: bytes) -> ListResult:
    root = _parse_root(body, "ListBucketResult")
    # Keys are asked for with encoding-type=url, which also keeps keys with characters that
    # XML 1.0 cannot carry intact; S3 encodes a space as "+", hence unquote_plus.
    encoded = _text(root, "EncodingType").lower() == "url"

    def decode(value: str) -> str:
        return unquote_plus(value) if encoded else value

    # A listing is the gateway's hottest parse: look children up by their qualified tag
    # (C-level findall/findtext) rather than comparing local names in Python.
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    key, size, etag, modified = (ns + n for n in ("Key", "Size", "ETag", "LastModified"))
    objects = [
        ListedObject(
            key=decode(item.findtext(key, "")),
            size=int(item.findtext(size) or 0),
            etag=item.findtext(etag, "").strip('"'),
            last_modified=parse_timestamp(item.findtext(modified, "")),
        )
        for item in root.iterfind(ns + "Contents")
    ]
    prefixes = [
        decode(item.findtext(ns + "Prefix", "")) for item in root.iterfind(ns + "CommonPrefixes")
    ]
    truncated = _text(root, "IsTruncated").lower() == "true"
    return ListResult(objects, prefixes, truncated)


def parse_upload_id(body: bytes) -> str:
    upload_id = _text(_parse(body), "UploadId")
    if not upload_id:
        raise ValueError("InitiateMultipartUploadResult without an UploadId")
    return upload_id


def parse_list_parts(body: bytes) -> PartsResult:
    # S3 says ListPartsResult; moto says ListPartsResponse.
    root = _parse_root(body, "ListPartsResult", "ListPartsResponse")
    parts = [
        PartInfo(
            part_number=int(_text(item, "PartNumber")),
            size=int(_text(item, "Size") or 0),
            etag=_text(item, "ETag").strip('"'),
        )
        for item in _children(root, "Part")
    ]
    truncated = _text(root, "IsTruncated").lower() == "true"
    marker = _text(root, "NextPartNumberMarker")
    return PartsResult(parts, truncated, int(marker) if marker else 0)


def build_complete(parts: list[PartInfo], checksum_algorithm: str | None = None) -> bytes:
    """The CompleteMultipartUpload body; with an algorithm, each part's checksum is listed."""
    element = None if checksum_algorithm is None else XML_ELEMENT[checksum_algorithm]
    items = "".join(
        f"<Part><PartNumber>{part.part_number}</PartNumber>"
        f"<ETag>&quot;{escape(part.etag.strip(chr(34)))}&quot;</ETag>"
        + (f"<{element}>{escape(part.checksum)}</{element}>" if element and part.checksum else "")
        + "</Part>"
        for part in parts
    )
    return (
        '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{items}</CompleteMultipartUpload>"
    ).encode()


def build_create_bucket(region: str) -> bytes:
    """The CreateBucket body; us-east-1 is the one region that must not be named."""
    if region in ("", "us-east-1"):
        return b""
    return (
        '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<LocationConstraint>{escape(region)}</LocationConstraint>"
        "</CreateBucketConfiguration>"
    ).encode()


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 listing timestamp (`2024-05-01T10:00:00.000Z`) as aware UTC."""
    if not value:
        return datetime.fromtimestamp(0, tz=UTC)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_document(body: bytes) -> ET.Element:
    """The root of an S3 XML answer; ET.ParseError for anything else, a DTD included."""
    # S3 answers never carry a DTD, and entities can only be declared in one: refusing it
    # rules out entity expansion ("billion laughs") and external entities alike.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ET.ParseError("an XML answer with a DTD is refused")
    return ET.fromstring(body)  # noqa: S314 - no DTD, so no entities to expand


_parse = parse_document


def _parse_root(body: bytes, *names: str) -> ET.Element:
    """The document, whose root must be one of `names`: other XML is no S3 answer."""
    root = parse_document(body)
    if _local(root.tag) not in names:
        raise ValueError(f"expected {' or '.join(names)}, got {_local(root.tag)[:40]!r}")
    return root


def clean_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """An endpoint's error text fit to show: printable, one line, at most `limit` characters."""
    printable = "".join(c if c.isprintable() else " " for c in text)
    flat = " ".join(printable.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> Iterator[ET.Element]:
    return (child for child in element if _local(child.tag) == name)


def _text(element: ET.Element, name: str) -> str:
    for child in _children(element, name):
        return child.text or ""
    return ""
