"""The `s3` backend: any S3-compatible endpoint, through one pooled aiohttp session.

This is Ferry's one S3 client: the gateway's backend, the export writer and both ends of the
copy engine use it. Every request is signed by the in-house SigV4 signer (s3_wire.py, checked
against botocore's). Bodies stream both ways: uploads are sent from the caller's async
iterator with a fixed Content-Length (or from memory, which may be sent again), downloads are
handed back as an iterator over the response. Requests go through S3Transport
(s3_transport.py): calls whose body can be sent again are retried by one RetryPolicy on
connection errors, 5xx, 429 and SlowDown; every answer is read into storage.exceptions by
s3_answers.py. Writes may carry Content-MD5 and x-amz-checksum-* and
answer the checksums the endpoint echoed; copies are pinned with x-amz-copy-source-if-match.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

import aiohttp

from storage import s3_xml
from storage.base import (
    Body,
    Checksum,
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
from storage.checksums import ALGORITHM_NAME
from storage.exceptions import (
    BackendError,
    BackendUnavailable,
    InvalidPart,
    InvalidPartNumber,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    PartsUnknown,
    StorageError,
)
from storage.retry import RetryPolicy
from storage.s3_answers import (
    content_range,
    document_answer,
    echoed_checksums,
    etag,
    http_date,
    object_info,
    parsed,
    translate,
)
from storage.s3_bodies import ResponseBody
from storage.s3_http import Answer
from storage.s3_listing import page_from, request_start_after
from storage.s3_transport import Response, S3Transport, is_transient
from storage.s3_wire import (
    Endpoint,
    Signer,
    check_addressing_style,
    integrity_headers,
    object_headers,
    quote_key,
)
from storage.validation import (
    clean_headers,
    clean_metadata,
)


class S3Storage(Storage):
    """An S3-compatible endpoint as a storage backend.

    `session`: an aiohttp session to use (its owner closes it); without one, a pooled session
    is made on first use and closed by `close()`. `retry`: the policy for requests that can be
    sent again (default: `retries` more tries after the first, `backoff` seconds doubling);
    the copy engine passes one try, as it retries whole steps itself.
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
        retry: RetryPolicy | None = None,
        chunk_size: int = 256 * 1024,
        timeout: aiohttp.ClientTimeout | None = None,
        read_timeout: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        owns_session: bool | None = None,
    ) -> None:
        self.addressing_style = check_addressing_style(addressing_style)
        self.endpoint = Endpoint.parse(endpoint_url)
        self.location = endpoint_url.rstrip("/")
        self.region = region or "us-east-1"
        self._chunk_size = chunk_size
        self._wire = S3Transport(
            self.endpoint,
            self.addressing_style,
            Signer(access_key_id, secret_access_key, session_token, self.region),
            session,
            # A session made for this storage alone (an import's source) is closed with it.
            owns_session=session is None if owns_session is None else owns_session,
            retry=retry
            or RetryPolicy(attempts=retries + 1, base=backoff, retryable=is_transient, sleep=sleep),
            # No total limit: a large body may legitimately take long; a silent peer may not
            # (read_timeout: the longest wait for an answer's first byte, or the next one).
            timeout=timeout
            or aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout),
        )

    def can_copy_from(self, other: Storage) -> bool:
        # Server-side copies need the same endpoint; whether these credentials may read the
        # other's bucket is only known by trying.
        return isinstance(other, S3Storage) and other.endpoint == self.endpoint

    # buckets

    async def create_bucket(self, bucket: str) -> None:
        body = s3_xml.build_create_bucket(self.region)
        try:
            response = await self._wire.call("PUT", bucket, body=body, ok=(200,))
        except BackendError as exc:
            if exc.code == "BucketAlreadyOwnedByYou":
                return
            raise
        response.release()

    async def bucket_exists(self, bucket: str) -> bool:
        response = await self._wire.call("HEAD", bucket, ok=(200, 404))
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
        body = await self._wire.read(await self._wire.call("GET", bucket, query=query))
        listed = parsed(s3_xml.parse_list_v2, body, f"listing {bucket}")
        return page_from(listed, prefix, delimiter, start_after)

    async def head(self, bucket: str, key: str, *, checksums: bool = False) -> ObjectInfo:
        check_key(key)
        headers = {"x-amz-checksum-mode": "ENABLED"} if checksums else None
        response = await self._wire.call("HEAD", bucket, key, headers=headers, ok=(200, 404))
        response.release()
        if response.status == 404:
            # A HEAD answer has no body to say which of the two is missing.
            if not await self.bucket_exists(bucket):
                raise NoSuchBucket(bucket)
            raise NoSuchKey(key)
        return object_info(key, response.headers, int(response.headers.get("Content-Length", 0)))

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
        response = await self._wire.call(
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
        answered_range = response.headers.get("Content-Range")
        if answered_range is None:
            return None, None, length
        first, last, _ = content_range(answered_range)
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
        response = await self._wire.call("GET", bucket, key, headers=headers, ok=(200, 206))
        length = int(response.headers.get("Content-Length", 0))
        if response.status == 206:
            first_byte, last_byte, size = content_range(response.headers.get("Content-Range", ""))
        else:
            # A server may ignore the Range header and send everything; so do we then.
            first_byte, last_byte, size = 0, length - 1, length
        info = object_info(key, response.headers, size)
        body: Answer | ResponseBody = (
            response if isinstance(response, Answer) else ResponseBody(response, self._chunk_size)
        )
        return ObjectStream(info, first_byte, last_byte, body)

    # writes

    async def put(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        size: int,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content_md5: str | None = None,
        checksum: Checksum | None = None,
    ) -> ObjectInfo:
        check_key(key)
        request = object_headers(content_type, metadata, headers)
        request.update(integrity_headers(content_md5, checksum))
        response = await self._wire.write(
            bucket, key, [], request, body, size, checksum is not None
        )
        return ObjectInfo(
            key=key,
            size=size,
            etag=etag(response.headers),
            last_modified=http_date(response.headers.get("Date")),
            content_type=request["Content-Type"],
            metadata=clean_metadata(metadata),
            headers=clean_headers(headers),
            checksums=echoed_checksums(response.headers),
        )

    async def copy_object(
        self, bucket: str, key: str, *, source_bucket: str, source_key: str, if_match: str
    ) -> ObjectInfo:
        check_key(key)
        request = {
            "x-amz-copy-source": f"/{source_bucket}/{quote_key(source_key)}",
            "x-amz-copy-source-if-match": f'"{if_match}"',
            "x-amz-metadata-directive": "COPY",
        }
        what = f"copying {source_bucket}/{source_key} to {key!r}"
        response = await self._wire.call("PUT", bucket, key, headers=request)
        copied_etag, checksums = self._copy_answer(await self._wire.read(response), response, what)
        return await self._answered(bucket, key, copied_etag, checksums)

    async def delete(self, bucket: str, key: str) -> None:
        check_key(key)
        try:
            response = await self._wire.call("DELETE", bucket, key, ok=(200, 204))
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
        checksum_algorithm: str | None = None,
    ) -> str:
        check_key(key)
        request = object_headers(content_type, metadata, headers)
        if checksum_algorithm is not None:
            request["x-amz-checksum-algorithm"] = ALGORITHM_NAME[checksum_algorithm]
        response = await self._wire.call(
            "POST",
            bucket,
            key,
            query=[("uploads", None)],
            headers=request,
            body=b"",
            checksum_sent=checksum_algorithm is not None,
        )
        return parsed(s3_xml.parse_upload_id, await self._wire.read(response), f"uploading {key!r}")

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: Body,
        *,
        size: int,
        content_md5: str | None = None,
        checksum: Checksum | None = None,
    ) -> PartInfo:
        check_key(key)
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        request = integrity_headers(content_md5, checksum)
        response = await self._wire.write(
            bucket, key, query, request, body, size, checksum is not None
        )
        answered = echoed_checksums(response.headers)
        return PartInfo(
            part_number,
            size,
            etag(response.headers),
            answered.get(checksum[0]) if checksum is not None else None,
        )

    async def upload_part_copy(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        *,
        source_bucket: str,
        source_key: str,
        start: int,
        end: int,
        if_match: str,
    ) -> PartInfo:
        check_key(key)
        query = [("partNumber", str(part_number)), ("uploadId", upload_id)]
        request = {
            "x-amz-copy-source": f"/{source_bucket}/{quote_key(source_key)}",
            "x-amz-copy-source-range": f"bytes={start}-{end}",
            "x-amz-copy-source-if-match": f'"{if_match}"',
        }
        what = f"copying part {part_number} of {key!r}"
        response = await self._wire.call("PUT", bucket, key, query=query, headers=request)
        copied_etag, _ = self._copy_answer(await self._wire.read(response), response, what)
        return PartInfo(part_number, end - start + 1, copied_etag)

    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: builtins.list[PartInfo],
        *,
        checksum_algorithm: str | None = None,
    ) -> ObjectInfo:
        check_key(key)
        if not parts:
            raise InvalidPart("a multipart upload needs at least one part")
        response = await self._wire.call(
            "POST",
            bucket,
            key,
            query=[("uploadId", upload_id)],
            headers={"Content-Type": "application/xml"},
            body=s3_xml.build_complete(parts, checksum_algorithm),
        )
        body = await self._wire.read(response)
        # S3 may answer 200 and still fail: the error then arrives in the body.
        if s3_xml.is_error(body):
            raise translate(200, body, f"completing {key!r}")
        completed_etag, checksums = document_answer(body, response.headers, f"completing {key!r}")
        return await self._answered(bucket, key, completed_etag, checksums)

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> None:
        check_key(key)
        response = await self._wire.call(
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
            result = parsed(
                s3_xml.parse_list_parts,
                await self._wire.read(await self._wire.call("GET", bucket, key, query=query)),
                f"listing the parts of {key!r}",
            )
            parts.extend(result.parts)
            if not result.is_truncated or result.next_marker <= marker:
                return parts
            marker = result.next_marker

    async def _answered(
        self, bucket: str, key: str, answered_etag: str, checksums: Mapping[str, str]
    ) -> ObjectInfo:
        """The written object's info, with the ETag and checksums its write answered (a
        HEAD may not show a composite checksum)."""
        info = await self.head(bucket, key, checksums=bool(checksums))
        return replace(
            info, etag=answered_etag or info.etag, checksums={**info.checksums, **checksums}
        )

    @staticmethod
    def _copy_answer(body: bytes, response: Response, what: str) -> tuple[str, dict[str, str]]:
        # CopyObject and UploadPartCopy may answer 200 with an error in the body.
        if s3_xml.is_error(body):
            raise translate(200, body, what)
        return document_answer(body, response.headers, what)

    # health and lifecycle

    async def ping(self) -> None:
        """A signed ListBuckets. AccessDenied counts as healthy: the signature was accepted,
        and credentials scoped to some buckets may not list all of them."""
        try:
            response = await self._wire.call("GET", None)
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
        await self._wire.close()
