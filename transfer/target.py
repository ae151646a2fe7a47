"""Writes to the destination that `S3Storage` has no call for.

`storage.s3.S3Storage` reads the target (HEAD, GET, ListParts) and aborts uploads; uploads
here need what it does not offer: Content-MD5 and x-amz-checksum-* headers on PutObject and
UploadPart, the checksum answers of those calls, CompleteMultipartUpload with part checksums,
UploadPartCopy and CopyObject pinned with x-amz-copy-source-if-match. Requests are addressed
and signed with storage.s3_wire's helpers, on the same aiohttp session as the S3Storage, so
both share one connection pool. Bodies are in-memory parts (bytes), so a call can be repeated.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from xml.sax.saxutils import escape

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from storage import s3_xml
from storage.egress import EgressRefused
from storage.s3_wire import (
    AnswerTooLarge,
    Endpoint,
    Signer,
    build_url,
    encode_query,
    quote_key,
    read_answer,
)
from transfer.checksums import ALGORITHM_NAME, HEADER, XML_ELEMENT
from transfer.exceptions import (
    AccessDenied,
    ChecksumRefused,
    Corrupted,
    SourceChanged,
    TargetRefused,
    TransferError,
    Transient,
    UploadGone,
)
from transfer.retry import translate
from transfer.spec import Destination

_SEND_CHUNK = 1024 * 1024
_RETRY_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling"}
)
_AUTH_STATUS = (401, 403)
_CORRUPT_CODES = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "BadChecksum"}
)


@dataclass(frozen=True)
class Ack:
    """What the target answered to a write: its ETag and any checksums it echoed."""

    etag: str
    checksums: Mapping[str, str] = field(default_factory=dict)  # algorithm -> base64
    size: int | None = None


@dataclass(frozen=True)
class TargetPart:
    part_number: int
    etag: str
    checksum: str | None = None  # base64, for uploads created with a checksum algorithm


class TargetClient:
    """Signed writes to one destination bucket."""

    def __init__(self, destination: Destination, session: aiohttp.ClientSession) -> None:
        self.destination = destination
        self.endpoint: Endpoint = destination.endpoint
        self._signer = Signer(
            destination.access_key_id,
            destination.secret_access_key,
            destination.session_token,
            destination.region or "us-east-1",
        )
        self._session = session

    async def put_object(
        self,
        key: str,
        body: bytes | bytearray,
        *,
        md5_b64: str | None,
        headers: Mapping[str, str],
        checksum: tuple[str, str] | None = None,
    ) -> Ack:
        request = {**headers, **_checksum_headers(checksum)}
        if md5_b64 is not None:
            request["Content-MD5"] = md5_b64
        _, answer, _ = await self._send("PUT", key, (), request, body, checksum is not None)
        return Ack(_etag(answer), _echoed(answer))

    async def create_multipart(
        self, key: str, *, headers: Mapping[str, str], algorithm: str | None
    ) -> str:
        request = dict(headers)
        if algorithm is not None:
            request["x-amz-checksum-algorithm"] = ALGORITHM_NAME[algorithm]
        _, _, body = await self._send(
            "POST", key, [("uploads", None)], request, b"", algorithm is not None
        )
        try:
            return s3_xml.parse_upload_id(body)
        except (ValueError, ET.ParseError) as exc:
            raise Transient(f"target: unreadable CreateMultipartUpload answer: {exc}") from exc

    async def upload_part(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        body: bytes | bytearray,
        *,
        md5_b64: str | None,
        checksum: tuple[str, str] | None = None,
    ) -> Ack:
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        request = _checksum_headers(checksum)
        if md5_b64 is not None:
            request["Content-MD5"] = md5_b64
        _, answer, _ = await self._send("PUT", key, query, request, body, checksum is not None)
        return Ack(_etag(answer), _echoed(answer))

    async def upload_part_copy(
        self,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        source_bucket: str,
        source_key: str,
        start: int,
        end: int,
        if_match: str,
    ) -> Ack:
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        request = {
            "x-amz-copy-source": f"/{source_bucket}/{quote_key(source_key)}",
            "x-amz-copy-source-range": f"bytes={start}-{end}",
            "x-amz-copy-source-if-match": f'"{if_match}"',
        }
        _, answer, body = await self._send("PUT", key, query, request, b"", False, copy=True)
        return _copy_ack(body, answer)

    async def copy_object(
        self,
        key: str,
        *,
        source_bucket: str,
        source_key: str,
        if_match: str,
    ) -> Ack:
        request = {
            "x-amz-copy-source": f"/{source_bucket}/{quote_key(source_key)}",
            "x-amz-copy-source-if-match": f'"{if_match}"',
            "x-amz-metadata-directive": "COPY",
        }
        _, answer, body = await self._send("PUT", key, (), request, b"", False, copy=True)
        return _copy_ack(body, answer)

    async def complete(
        self, key: str, upload_id: str, parts: Sequence[TargetPart], algorithm: str | None
    ) -> Ack:
        items = []
        for part in parts:
            item = (
                f"<PartNumber>{part.part_number}</PartNumber>"
                f"<ETag>&quot;{escape(part.etag)}&quot;</ETag>"
            )
            if algorithm is not None and part.checksum:
                element = XML_ELEMENT[algorithm]
                item += f"<{element}>{escape(part.checksum)}</{element}>"
            items.append(f"<Part>{item}</Part>")
        document = (
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"{''.join(items)}</CompleteMultipartUpload>"
        ).encode()
        _, answer, body = await self._send(
            "POST",
            key,
            [("uploadId", upload_id)],
            {"Content-Type": "application/xml"},
            document,
            False,
            signed_body=True,
        )
        # A 200 may still carry an error: CompleteMultipartUpload fails late, in the body.
        if s3_xml.is_error(body):
            raise _error(200, body, f"completing {key!r}", checksum_sent=False)
        try:
            root = s3_xml.parse_document(body)
        except ET.ParseError as exc:
            raise Transient(f"target: unreadable CompleteMultipartUpload answer: {exc}") from exc
        etag = _find(root, "ETag").strip('"') or _etag(answer)
        checksums = {
            name: value for name, element in XML_ELEMENT.items() if (value := _find(root, element))
        }
        return Ack(etag, checksums or _echoed(answer))

    async def head(self, key: str) -> tuple[Ack, Mapping[str, str]] | None:
        """(ETag, checksums, size) and all headers of the target object; None if missing."""
        status, answer, _ = await self._send(
            "HEAD", key, (), {"x-amz-checksum-mode": "ENABLED"}, None, False, ok=(200, 404)
        )
        if status == 404:
            return None
        size = int(answer.get("Content-Length", "0"))
        return Ack(_etag(answer), _echoed(answer), size), answer

    async def _send(
        self,
        method: str,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: bytes | bytearray | None,
        checksum_sent: bool,
        *,
        ok: tuple[int, ...] = (200,),
        copy: bool = False,
        signed_body: bool = False,
    ) -> tuple[int, CIMultiDictProxy[str], bytes]:
        url, host = build_url(
            self.endpoint,
            self.destination.addressing_style,
            self.destination.bucket,
            key,
            encode_query(query),
        )
        to_sign = {"Host": host, "Accept-Encoding": "identity", **headers}
        if body is not None:
            to_sign["Content-Length"] = str(len(body))
        # Part bodies go as UNSIGNED-PAYLOAD: hashing them with SHA-256 only to sign would cost
        # a second pass; Content-MD5 (signed, as a header) protects them instead.
        signed = self._signer.sign(
            method, url, to_sign, bytes(body) if signed_body and body is not None else None
        )
        what = f"{method} {self.destination.bucket}/{key}"
        try:
            async with self._session.request(
                method,
                URL(url, encoded=True),
                headers=signed,
                data=_payload(body),
                allow_redirects=False,
                auto_decompress=False,
            ) as response:
                answer_body = await read_answer(response)
                status = response.status
                answer = response.headers
        except TransferError:
            raise
        except AnswerTooLarge as exc:
            raise TargetRefused(f"target: {what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError, ConnectionError, EgressRefused) as exc:
            raise translate(exc, "target") from exc
        if status in ok:
            # UploadPartCopy and CopyObject may answer 200 with an error body.
            if copy and s3_xml.is_error(answer_body):
                raise _error(status, answer_body, what, checksum_sent=False)
            return status, answer, answer_body
        raise _error(status, answer_body, what, checksum_sent=checksum_sent)


def _payload(
    body: bytes | bytearray | None,
) -> bytes | bytearray | AsyncIterator[memoryview] | None:
    """What aiohttp sends: a small body as it is (the cheapest path), a large one in slices."""
    if not body:
        return None
    return body if len(body) <= _SEND_CHUNK else _chunks(body)


async def _chunks(body: bytes | bytearray) -> AsyncIterator[memoryview]:
    """A part as slices of itself: sent without a copy, and aiohttp does not warn about a
    large raw body (a fresh iterator per attempt, so a retry resends the same bytes)."""
    with memoryview(body) as view:
        for start in range(0, len(view), _SEND_CHUNK):
            yield view[start : start + _SEND_CHUNK]


def _checksum_headers(checksum: tuple[str, str] | None) -> dict[str, str]:
    if checksum is None:
        return {}
    algorithm, value = checksum
    return {HEADER[algorithm]: value, "x-amz-sdk-checksum-algorithm": ALGORITHM_NAME[algorithm]}


def _etag(headers: CIMultiDictProxy[str]) -> str:
    return headers.get("ETag", "").strip('"')


def _echoed(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    return {name: value for name, header in HEADER.items() if (value := headers.get(header))}


def _find(root: ET.Element, name: str) -> str:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == name:
            return (element.text or "").strip()
    return ""


def _copy_ack(body: bytes, headers: CIMultiDictProxy[str]) -> Ack:
    try:
        root = s3_xml.parse_document(body)
    except ET.ParseError as exc:
        raise Transient(f"target: unreadable copy answer: {exc}") from exc
    checksums = {
        name: value for name, element in XML_ELEMENT.items() if (value := _find(root, element))
    }
    return Ack(_find(root, "ETag").strip('"') or _etag(headers), checksums)


def _error(status: int, body: bytes, what: str, *, checksum_sent: bool) -> TransferError:
    code, message = s3_xml.parse_error(body)
    try:
        phrase = f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        phrase = f"HTTP {status}"
    said = f"{code} (HTTP {status})" if code else phrase
    detail = f"target: {what}: {said}{f': {message}' if message else ''}"
    if status >= 500 or status == 429 or code in _RETRY_CODES:
        if status == 501 and checksum_sent:
            return ChecksumRefused(detail)
        return Transient(detail)
    if code in _CORRUPT_CODES:
        return Corrupted(detail)
    if status in _AUTH_STATUS and code != "PreconditionFailed":
        return AccessDenied(detail)
    if code == "NoSuchUpload":
        return UploadGone(detail)
    if status == 412 or code == "PreconditionFailed":
        return SourceChanged(detail)
    if checksum_sent and status == 400 and _about_checksums(code, message):
        return ChecksumRefused(detail)
    return TargetRefused(detail)


def _about_checksums(code: str, message: str) -> bool:
    text = f"{code} {message}".lower()
    return code in ("NotImplemented", "InvalidRequest", "InvalidArgument") and (
        "checksum" in text or "crc" in text or "sha256" in text or "not implemented" in text
    )
