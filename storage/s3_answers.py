"""What an S3 endpoint answers, read into storage's terms: object info, checksums, errors.

The one error model of the `s3` backend: an answer's status and S3 error code become a
storage.exceptions class here, whoever made the request (the gateway's backend, the copy
engine's source or target, the export writer).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar

from storage import s3_xml
from storage.base import ObjectInfo
from storage.checksums import HEADER, XML_ELEMENT
from storage.exceptions import (
    BackendError,
    BackendUnavailable,
    BadDigest,
    ChecksumUnsupported,
    IncompleteBody,
    InvalidBucketName,
    InvalidKey,
    InvalidPart,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    StorageError,
)
from storage.httpdates import parse_imf_fixdate
from storage.validation import DEFAULT_CONTENT_TYPE, META_PREFIX, STANDARD_HEADERS

ERRORS: Final[dict[str, type[StorageError]]] = {
    "NoSuchKey": NoSuchKey,
    "NoSuchBucket": NoSuchBucket,
    "NoSuchUpload": NoSuchUpload,
    "InvalidRange": InvalidRange,
    "InvalidPart": InvalidPart,
    "InvalidPartOrder": InvalidPart,
    "EntityTooSmall": InvalidPart,
    "KeyTooLongError": InvalidKey,
    "InvalidBucketName": InvalidBucketName,
    "IncompleteBody": IncompleteBody,
    "BadDigest": BadDigest,
    "InvalidDigest": BadDigest,
    "XAmzContentChecksumMismatch": BadDigest,
    "BadChecksum": BadDigest,
    "PreconditionFailed": PreconditionFailed,
}
RETRY_CODES: Final = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)
_T = TypeVar("_T")


def transient(status: int, body: bytes) -> bool:
    if status >= 500 or status == 429:
        return True
    code, _ = s3_xml.parse_error(body)
    return code in RETRY_CODES


def checksum_refused(status: int, body: bytes) -> bool:
    """Whether an endpoint refused the x-amz-checksum-* headers it was sent (501, or a 400
    whose code and message are about checksums)."""
    if status == 501:
        return True
    code, message = s3_xml.parse_error(body)
    text = f"{code} {message}".lower()
    return (
        status == 400
        and code in ("NotImplemented", "InvalidRequest", "InvalidArgument")
        and ("checksum" in text or "crc" in text or "sha256" in text or "not implemented" in text)
    )


def translate(status: int, body: bytes, what: str, *, bucket_only: bool = False) -> StorageError:
    code, message = s3_xml.parse_error(body)
    error = ERRORS.get(code)
    said = f"{code} (HTTP {status})" if code else f"HTTP {status}"
    detail = f"{what}: {said}{f': {message}' if message else ''}"
    if error is not None:
        return error(detail)
    if status == 416:
        return InvalidRange(detail)
    if status == 412:
        return PreconditionFailed(detail)
    if status == 404 and not code:
        return NoSuchBucket(detail) if bucket_only else NoSuchKey(detail)
    return BackendError(detail, status=status, code=code)


def refused_checksum(what: str, status: int, body: bytes) -> ChecksumUnsupported:
    code, message = s3_xml.parse_error(body)
    said = f"{code} (HTTP {status})" if code else f"HTTP {status}"
    return ChecksumUnsupported(f"{what}: {said}{f': {message}' if message else ''}")


def parsed(parse: Callable[[bytes], _T], body: bytes, what: str) -> _T:
    """An answer parsed by `parse`; one that is not S3 XML is the endpoint's failure."""
    try:
        return parse(body)
    except (ET.ParseError, ValueError) as exc:
        raise BackendUnavailable(f"{what}: the answer is not S3 XML") from exc


def object_info(key: str, headers: Mapping[str, str], size: int) -> ObjectInfo:
    metadata = {
        lower[len(META_PREFIX) :]: value
        for name, value in headers.items()
        if (lower := name.lower()).startswith(META_PREFIX)
    }
    standard = {name: headers[name] for name in STANDARD_HEADERS if name in headers}
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag(headers),
        last_modified=http_date(headers.get("Last-Modified")),
        content_type=headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
        metadata=metadata,
        headers=standard,
        etag_is_md5=_etag_is_md5(headers),
        checksums=echoed_checksums(headers),
    )


def etag(headers: Mapping[str, str]) -> str:
    return headers.get("ETag", "").strip('"')


def echoed_checksums(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, header in HEADER.items() if (value := headers.get(header))}


def document_answer(
    body: bytes, headers: Mapping[str, str], what: str
) -> tuple[str, dict[str, str]]:
    """(ETag, checksums) from a CopyObject, UploadPartCopy or CompleteMultipartUpload
    answer, falling back to its headers."""
    root = parsed(s3_xml.parse_document, body, what)
    checksums = {
        name: value for name, element in XML_ELEMENT.items() if (value := _find(root, element))
    }
    return _find(root, "ETag").strip('"') or etag(headers), checksums or echoed_checksums(headers)


def _find(root: ET.Element, name: str) -> str:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == name:
            return (element.text or "").strip()
    return ""


def _etag_is_md5(headers: Mapping[str, str]) -> bool:
    # S3 documents that objects encrypted with SSE-KMS or SSE-C have ETags that are not an
    # MD5 of their data; SSE-S3 (AES256) ones are.
    encryption = headers.get("x-amz-server-side-encryption", "").lower()
    customer_key = "x-amz-server-side-encryption-customer-algorithm" in headers
    return not (encryption.startswith("aws:kms") or customer_key)


def content_range(value: str) -> tuple[int, int, int]:
    """(first, last, size) from `bytes first-last/size`."""
    try:
        unit, _, rest = value.partition(" ")
        span, _, total = rest.partition("/")
        first, _, last = span.partition("-")
        if unit != "bytes":
            raise ValueError(unit)
        return int(first), int(last), int(total)
    except ValueError:
        raise BackendError(f"unreadable Content-Range {value!r} in a 206 answer") from None


def http_date(value: str | None) -> datetime:
    if value:
        fixdate = parse_imf_fixdate(value)
        if fixdate is not None:
            return fixdate
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)
