"""The `s3` backend: any S3-compatible endpoint, through one pooled aiohttp session.

Every request is signed by botocore's SigV4 signer (s3_wire.py). Bodies stream both ways:
uploads are sent from the caller's async iterator with a fixed Content-Length, downloads are
handed back as an iterator over the response. Calls without a streamed body are retried with
backoff on connection errors, 5xx, 429 and SlowDown; S3 error codes become storage.exceptions.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from storage import s3_xml
from storage.base import (
    ListPage,
    ObjectInfo,
    ObjectStream,
    PartInfo,
    PartSpan,
    Storage,
    check_key,
    parts_in_etag,
    whole_object_part,
)
from storage.exceptions import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    IncompleteBody,
    InvalidBucketName,
    InvalidKey,
    InvalidPart,
    InvalidPartNumber,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PartsUnknown,
    StorageError,
)
from storage.s3_bodies import ResponseBody, SizedBody
from storage.s3_listing import page_from, request_start_after
from storage.s3_wire import (
    ADDRESSING_STYLES,
    AnswerTooLarge,
    Endpoint,
    Signer,
    build_url,
    encode_query,
    read_answer,
)
from storage.validation import (
    DEFAULT_CONTENT_TYPE,
    META_PREFIX,
    STANDARD_HEADERS,
    clean_content_type,
    clean_headers,
    clean_metadata,
)

_ERRORS: Final[dict[str, type[StorageError]]] = {
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
}
_RETRY_CODES: Final = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout"}
)
_T = TypeVar("_T")


class S3Storage(Storage):
    """An S3-compatible endpoint as a storage backend.

    `session`: an aiohttp session to use (its owner closes it); without one, a pooled session
    is made on first use and closed by `close()`.
    """

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        session_token: str | None = None,
        addressing_style: str = "path",
        session: aiohttp.ClientSession | None = None,
        *,
        retries: int = 2,
        backoff: float = 0.2,
        chunk_size: int = 256 * 1024,
        timeout: aiohttp.ClientTimeout | None = None,
        read_timeout: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(
                f"storage addressing_style {addressing_style!r} is not one of "
                f"{', '.join(ADDRESSING_STYLES)}"
            )
        self.endpoint = Endpoint.parse(endpoint_url)
        self.region = region or "us-east-1"
        self.addressing_style = addressing_style
        self._signer = Signer(access_key_id, secret_access_key, session_token, self.region)
        self._session = session
        self._owns_session = session is None
        self._retries = retries
        self._backoff = backoff
        self._chunk_size = chunk_size
        # No total limit: a large body may legitimately take long; a silent peer may not
        # (read_timeout: the longest wait for an answer's first byte, or the next one).
        self._timeout = timeout or aiohttp.ClientTimeout(
            total=None, sock_connect=10, sock_read=read_timeout
        )
        self._sleep = sleep

    # buckets

    async def create_bucket(self, bucket: str) -> None:
        body = s3_xml.build_create_bucket(self.region)
        try:
            response = await self._call("PUT", bucket, body=body, ok=(200,))
        except BackendError as exc:
            if exc.code == "BucketAlreadyOwnedByYou":
                return
            raise
        response.release()

    async def bucket_exists(self, bucket: str) -> bool:
        response = await self._call("HEAD", bucket, ok=(200, 404))
        response.release()
        return response.status == 200

    # reads

    async def list(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = 1000,
    ) -> ListPage:
        if max_keys < 0:
            raise ValueError("max_keys must not be negative")
        query: builtins.list[tuple[str, str | None]] = [
            ("list-type", "2"),
            ("encoding-type", "url"),
            ("max-keys", str(max_keys)),
        ]
        for name, value in (
            ("prefix", prefix),
            ("delimiter", delimiter),
            ("start-after", request_start_after(prefix, delimiter, start_after)),
        ):
            if value:
                query.append((name, value))
        body = await self._read(await self._call("GET", bucket, query=query))
        listed = _parsed(s3_xml.parse_list_v2, body, f"listing {bucket}")
        return page_from(listed, prefix, delimiter, start_after)

    async def head(self, bucket: str, key: str) -> ObjectInfo:
        check_key(key)
        response = await self._call("HEAD", bucket, key, ok=(200, 404))
        response.release()
        if response.status == 404:
            # A HEAD answer has no body to say which of the two is missing.
            if not await self.bucket_exists(bucket):
                raise NoSuchBucket(bucket)
            raise NoSuchKey(key)
        return _object_info(key, response.headers, int(response.headers.get("Content-Length", 0)))

    async def part_span(
        self, bucket: str, key: str, part_number: int
    ) -> tuple[ObjectInfo, PartSpan]:
        # The plain HEAD first: its ETag tells how many parts there are, so a part beyond
        # them is refused here (moto answers a HEAD for it with 500), and a server that
        # ignores partNumber cannot pass the whole object off as one part.
        info = await self.head(bucket, key)
        count = parts_in_etag(info.etag)
        if count == 1:
            return info, whole_object_part(info, part_number)
        if not 1 <= part_number <= count:
            raise InvalidPartNumber(f"{key!r} has {count} parts, not {part_number}")
        first, last, length = await self._head_part(bucket, key, part_number)
        if first is None:
            # No Content-Range in the answer (moto): the part starts after the ones before.
            lengths = await asyncio.gather(
                *(self._head_part(bucket, key, n) for n in range(1, part_number))
            )
            first = sum(n for _, _, n in lengths)
            last = first + length - 1
            if length == info.size:
                raise PartsUnknown(f"{key!r}: the backend ignored partNumber={part_number}")
        assert last is not None
        if length == 0 or last >= info.size:
            raise InvalidPartNumber(f"{key!r} has no bytes in part {part_number}")
        return info, PartSpan(part_number, count, first, last)

    async def _head_part(
        self, bucket: str, key: str, part_number: int
    ) -> tuple[int | None, int | None, int]:
        """(first, last, length) of a part; first and last None when the answer has no
        Content-Range."""
        response = await self._call(
            "HEAD",
            bucket,
            key,
            query=[("partNumber", str(part_number))],
            ok=(200, 206, 404, 416),
        )
        response.release()
        if response.status == 416:
            raise InvalidPartNumber(f"{key!r} has no part {part_number}")
        if response.status == 404:
            raise NoSuchKey(key)
        length = int(response.headers.get("Content-Length", 0))
        content_range = response.headers.get("Content-Range")
        if content_range is None:
            return None, None, length
        first, last, _ = _content_range(content_range)
        return first, last, length

    async def get(
        self, bucket: str, key: str, *, start: int | None = None, end: int | None = None
    ) -> ObjectStream:
        check_key(key)
        headers = {}
        if start is not None or end is not None:
            if start is None and end is not None and end <= 0:
                raise InvalidRange(f"suffix range of {end} bytes")
            if start is not None and (start < 0 or (end is not None and end < start)):
                raise InvalidRange(f"malformed range {start}-{'' if end is None else end}")
            first = "" if start is None else str(start)
            last = "" if end is None else str(end)
            headers["Range"] = f"bytes={first}-{last}"
        response = await self._call("GET", bucket, key, headers=headers, ok=(200, 206))
        length = int(response.headers.get("Content-Length", 0))
        if response.status == 206:
            first_byte, last_byte, size = _content_range(response.headers.get("Content-Range", ""))
        else:
            # A server may ignore the Range header and send everything; so do we then.
            first_byte, last_byte, size = 0, length - 1, length
        info = _object_info(key, response.headers, size)
        body = ResponseBody(response, self._chunk_size)
        return ObjectStream(info, first_byte, last_byte, body)

    # writes

    async def put(
        self,
        bucket: str,
        key: str,
        body: AsyncIterator[bytes],
        *,
        size: int,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        check_key(key)
        request_headers = _object_headers(content_type, metadata, headers)
        response = await self._upload("PUT", bucket, key, [], request_headers, body, size)
        response.release()
        return ObjectInfo(
            key=key,
            size=size,
            etag=response.headers.get("ETag", "").strip('"'),
            last_modified=_http_date(response.headers.get("Date")),
            content_type=request_headers["Content-Type"],
            metadata=clean_metadata(metadata),
            headers=clean_headers(headers),
        )

    async def delete(self, bucket: str, key: str) -> None:
        check_key(key)
        try:
            response = await self._call("DELETE", bucket, key, ok=(200, 204))
        except NoSuchKey:
            return  # some servers say so; S3 itself treats it as done
        response.release()

    # multipart

    async def create_multipart(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        check_key(key)
        request_headers = _object_headers(content_type, metadata, headers)
        response = await self._call(
            "POST", bucket, key, query=[("uploads", None)], headers=request_headers, body=b""
        )
        return _parsed(s3_xml.parse_upload_id, await self._read(response), f"uploading {key!r}")

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: AsyncIterator[bytes],
        *,
        size: int,
    ) -> PartInfo:
        check_key(key)
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        response = await self._upload("PUT", bucket, key, query, {}, body, size)
        response.release()
        return PartInfo(part_number, size, response.headers.get("ETag", "").strip('"'))

    async def complete_multipart(
        self, bucket: str, key: str, upload_id: str, parts: builtins.list[PartInfo]
    ) -> ObjectInfo:
        check_key(key)
        if not parts:
            raise InvalidPart("a multipart upload needs at least one part")
        response = await self._call(
            "POST",
            bucket,
            key,
            query=[("uploadId", upload_id)],
            headers={"Content-Type": "application/xml"},
            body=s3_xml.build_complete(parts),
        )
        body = await self._read(response)
        # S3 may answer 200 and still fail: the error then arrives in the body.
        if s3_xml.is_error(body):
            raise _translate(200, body, f"completing {key!r}")
        return await self.head(bucket, key)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        check_key(key)
        response = await self._call(
            "DELETE", bucket, key, query=[("uploadId", upload_id)], ok=(200, 204)
        )
        response.release()

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> builtins.list[PartInfo]:
        check_key(key)
        parts: builtins.list[PartInfo] = []
        marker = 0
        while True:
            query: builtins.list[tuple[str, str | None]] = [("uploadId", upload_id)]
            if marker:
                query.append(("part-number-marker", str(marker)))
            result = _parsed(
                s3_xml.parse_list_parts,
                await self._read(await self._call("GET", bucket, key, query=query)),
                f"listing the parts of {key!r}",
            )
            parts.extend(result.parts)
            if not result.is_truncated or result.next_marker <= marker:
                return parts
            marker = result.next_marker

    # health and lifecycle

    async def ping(self) -> None:
        """A signed ListBuckets. AccessDenied counts as healthy: the signature was accepted,
        and credentials scoped to some buckets may not list all of them."""
        try:
            response = await self._call("GET", None)
        except BackendError as exc:
            if exc.code == "AccessDenied":
                return
            raise BackendUnavailable(f"S3 endpoint refused a signed ListBuckets: {exc}") from exc
        except StorageError as exc:
            if isinstance(exc, BackendUnavailable):
                raise
            raise BackendUnavailable(f"S3 endpoint refused a signed ListBuckets: {exc}") from exc
        response.release()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # transport

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=64),
                # S3 sets no cookies: the jar's parsing of every answer's headers is waste.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def _call(
        self,
        method: str,
        bucket: str | None,
        key: str = "",
        *,
        query: Sequence[tuple[str, str | None]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        ok: tuple[int, ...] = (200,),
    ) -> aiohttp.ClientResponse:
        """A request with an in-memory body, retried on transient failures."""
        what = f"{method} {bucket or ''}/{key}"
        for attempt in range(self._retries + 1):
            last_try = attempt == self._retries
            try:
                response = await self._send(method, bucket, key, query, headers or {}, body, None)
            except (aiohttp.ClientError, TimeoutError) as exc:
                # A backend silent for the whole read timeout would likely be silent again:
                # the caller hears at once (503 at the gateway) rather than after retries.
                if last_try or isinstance(exc, TimeoutError):
                    raise BackendUnavailable(f"{what}: {exc or type(exc).__name__}") from exc
                await self._pause(attempt)
                continue
            if response.status in ok:
                return response
            error_body = await self._read(response)
            if _transient(response.status, error_body):
                if last_try:
                    raise BackendUnavailable(f"{what}: HTTP {response.status} after retries")
                await self._pause(attempt)
                continue
            raise _translate(response.status, error_body, what, bucket_only=not key)
        raise AssertionError("unreachable")

    async def _upload(
        self,
        method: str,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: AsyncIterator[bytes],
        size: int,
    ) -> aiohttp.ClientResponse:
        """A request with a streamed body: not retried, the body can be read only once."""
        what = f"{method} {bucket}/{key}"
        if size < 0:
            raise ValueError("size must not be negative")
        payload = SizedBody(body, size)
        try:
            response = await self._send(method, bucket, key, query, headers, None, payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if payload.error is not None:
                raise payload.error from None
            raise BackendUnavailable(f"{what}: {exc or type(exc).__name__}") from exc
        if payload.error is not None:
            response.close()
            raise payload.error
        if response.status == 200:
            return response
        error_body = await self._read(response)
        if _transient(response.status, error_body):
            raise BackendUnavailable(f"{what}: HTTP {response.status}")
        raise _translate(response.status, error_body, what)

    async def _send(
        self,
        method: str,
        bucket: str | None,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: bytes | None,
        stream: SizedBody | None,
    ) -> aiohttp.ClientResponse:
        url, host = build_url(
            self.endpoint, self.addressing_style, bucket, key, encode_query(query)
        )
        # Host is set (and signed) here rather than left to aiohttp, so the two cannot differ;
        # identity encoding because bodies are passed on byte for byte.
        to_sign = {"Host": host, "Accept-Encoding": "identity", **headers}
        if stream is not None:
            to_sign["Content-Length"] = str(stream.size)
        signed = self._signer.sign(method, url, to_sign, body)
        data: bytes | SizedBody | None = stream if stream is not None else (body or None)
        return await self._client().request(
            method,
            URL(url, encoded=True),
            headers=signed,
            data=data,
            allow_redirects=False,
            auto_decompress=False,
        )

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole (small, XML) body of a response, which is then released."""
        try:
            return await read_answer(response)
        except AnswerTooLarge as exc:
            raise BackendUnavailable(f"an S3 answer was refused: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"reading an S3 answer failed: {exc}") from exc
        finally:
            response.release()

    async def _pause(self, attempt: int) -> None:
        # Exponential backoff with full jitter, so parallel callers do not retry in step.
        await self._sleep(random.uniform(0, self._backoff * 2**attempt))


def _object_headers(
    content_type: str | None,
    metadata: Mapping[str, str] | None,
    headers: Mapping[str, str] | None,
) -> dict[str, str]:
    result = {"Content-Type": clean_content_type(content_type)}
    result.update(clean_headers(headers))
    for name, value in clean_metadata(metadata).items():
        result[META_PREFIX + name] = value
    return result


def _object_info(key: str, headers: CIMultiDictProxy[str], size: int) -> ObjectInfo:
    metadata = {
        name.lower()[len(META_PREFIX) :]: value
        for name, value in headers.items()
        if name.lower().startswith(META_PREFIX)
    }
    standard = {name: headers[name] for name in STANDARD_HEADERS if name in headers}
    return ObjectInfo(
        key=key,
        size=size,
        etag=headers.get("ETag", "").strip('"'),
        last_modified=_http_date(headers.get("Last-Modified")),
        content_type=headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
        metadata=metadata,
        headers=standard,
        etag_is_md5=_etag_is_md5(headers),
    )


def _etag_is_md5(headers: CIMultiDictProxy[str]) -> bool:
    # S3 documents that objects encrypted with SSE-KMS or SSE-C have ETags that are not an
    # MD5 of their data; SSE-S3 (AES256) ones are.
    encryption = headers.get("x-amz-server-side-encryption", "").lower()
    customer_key = "x-amz-server-side-encryption-customer-algorithm" in headers
    return not (encryption.startswith("aws:kms") or customer_key)


def _content_range(value: str) -> tuple[int, int, int]:
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


def _http_date(value: str | None) -> datetime:
    if value:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC)


def _transient(status: int, body: bytes) -> bool:
    if status >= 500 or status == 429:
        return True
    code, _ = s3_xml.parse_error(body)
    return code in _RETRY_CODES


def _translate(status: int, body: bytes, what: str, *, bucket_only: bool = False) -> StorageError:
    code, message = s3_xml.parse_error(body)
    error = _ERRORS.get(code)
    detail = f"{what}: {code or f'HTTP {status}'}{f': {message}' if message else ''}"
    if error is not None:
        return error(detail)
    if status == 416:
        return InvalidRange(detail)
    if status == 404 and not code:
        return NoSuchBucket(detail) if bucket_only else NoSuchKey(detail)
    return BackendError(detail, status=status, code=code)


def _parsed(parse: Callable[[bytes], _T], body: bytes, what: str) -> _T:
    """An answer parsed by `parse`; one that is not S3 XML is the endpoint's failure."""
    try:
        return parse(body)
    except (ET.ParseError, ValueError) as exc:
        raise BackendUnavailable(f"{what}: the answer is not S3 XML") from exc
