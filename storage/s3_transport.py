"""Signed requests to one S3 endpoint: what S3Storage says goes over the wire through here,
retried by one RetryPolicy on connection errors, 5xx, 429 and SlowDown, and every answer
that is not OK read into storage.exceptions.

Requests go over one pooled aiohttp session; the bodiless reads (GET, HEAD) of a transport
that makes its own connections go over the lean HttpPool (s3_http.py) instead, which costs a
fraction of the CPU per request. A transport given a session (the egress policy's, for an
address a user supplied) sends everything through that session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence

import aiohttp
from yarl import URL

from storage.base import Body
from storage.exceptions import BackendUnavailable, StorageError
from storage.retry import RetryPolicy
from storage.s3_answers import checksum_refused, refused_checksum, transient, translate
from storage.s3_bodies import SizedBody, in_memory_payload
from storage.s3_http import Answer, HttpError, HttpPool
from storage.s3_wire import (
    ANSWER_LIMIT,
    AnswerTooLarge,
    Endpoint,
    Signer,
    build_url,
    encode_query,
    read_answer,
)

# What a request answers: aiohttp's response, or the lean pool's for a bodiless read. Both
# give status, headers, release() and close(); S3Transport.read reads either's body.
Response = aiohttp.ClientResponse | Answer


class S3Transport:
    """`session`: an aiohttp session to use; without one, a pooled session is made on first
    use, and reads go over a lean HttpPool. `close()` closes the session when
    `owns_session`."""

    def __init__(
        self,
        endpoint: Endpoint,
        addressing_style: str,
        signer: Signer,
        session: aiohttp.ClientSession | None,
        *,
        owns_session: bool,
        retry: RetryPolicy,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self.endpoint = endpoint
        self.addressing_style = addressing_style
        self._signer = signer
        self._session = session
        self._owns_session = owns_session
        self._retry = retry
        self._timeout = timeout
        self._reads: HttpPool | None = None
        if session is None and addressing_style == "path":
            # Path style only: one host, one pool (virtual style names a host per bucket).
            https = endpoint.scheme == "https"
            self._reads = HttpPool(
                endpoint.hostname,
                endpoint.port or (443 if https else 80),
                tls=https,
                limit=64,
                connect_timeout=timeout.sock_connect or 10.0,
                read_timeout=timeout.sock_read or 60.0,
            )

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                connector=aiohttp.TCPConnector(limit=64),
                # S3 sets no cookies: the jar's parsing of every answer's headers is waste.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def call(
        self,
        method: str,
        bucket: str | None,
        key: str = "",
        *,
        query: Sequence[tuple[str, str | None]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray = b"",
        ok: tuple[int, ...] = (200,),
        sign_body: bool = True,
        checksum_sent: bool = False,
    ) -> Response:
        """A request with an in-memory body, retried by the policy on transient failures.

        `sign_body=False` sends the body as UNSIGNED-PAYLOAD: hashing an object part with
        SHA-256 only to sign it would read it twice; its Content-MD5 or checksum protects it.
        """
        what = f"{method} {bucket or ''}/{key}"

        lean = self._reads is not None and not body and method in ("GET", "HEAD")

        async def attempt() -> Response:
            try:
                if lean:
                    response: Response = await self.read_request(
                        method, bucket, key, query, headers or {}
                    )
                else:
                    response = await self.send(
                        method, bucket, key, query, headers or {}, body, sign_body=sign_body
                    )
            except TimeoutError as exc:
                # A backend silent for the whole read timeout would likely be silent again:
                # the caller hears at once (503 at the gateway) rather than after retries.
                raise BackendUnavailable(f"{what}: {exc or type(exc).__name__}") from exc
            except (aiohttp.ClientError, HttpError) as exc:
                raise _Again(f"{what}: {exc or type(exc).__name__}") from exc
            if response.status in ok:
                return response
            error_body = await self.read(response)
            raise _refusal(response.status, error_body, what, not key, checksum_sent)

        return await self._retry.call(what, attempt)

    async def write(
        self,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: Body,
        size: int,
        checksum_sent: bool,
    ) -> Response:
        """An object or part body: from memory through `call` (so retried), or streamed."""
        if size < 0:
            raise ValueError("size must not be negative")
        if isinstance(body, bytes | bytearray):
            if len(body) != size:
                raise ValueError(f"a body of {len(body)} bytes announced as {size}")
            response = await self.call(
                "PUT",
                bucket,
                key,
                query=query,
                headers=headers,
                body=body,
                sign_body=False,
                checksum_sent=checksum_sent,
            )
            response.release()
            return response
        return await self.upload(bucket, key, query, headers, body, size, checksum_sent)

    async def upload(
        self,
        bucket: str,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: AsyncIterator[bytes],
        size: int,
        checksum_sent: bool,
    ) -> aiohttp.ClientResponse:
        """A request with a streamed body: not retried, the body can be read only once."""
        what = f"PUT {bucket}/{key}"
        payload = SizedBody(body, size)
        try:
            response = await self.send("PUT", bucket, key, query, headers, payload)
        except (aiohttp.ClientError, TimeoutError) as exc:
            if payload.error is not None:
                raise payload.error from None
            raise BackendUnavailable(f"{what}: {exc or type(exc).__name__}") from exc
        if payload.error is not None:
            response.close()
            raise payload.error
        if response.status == 200:
            response.release()
            return response
        error_body = await self.read(response)
        refusal = _refusal(response.status, error_body, what, False, checksum_sent)
        if isinstance(refusal, _Again):
            raise BackendUnavailable(str(refusal))
        raise refusal

    async def send(
        self,
        method: str,
        bucket: str | None,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
        body: bytes | bytearray | SizedBody,
        *,
        sign_body: bool = True,
    ) -> aiohttp.ClientResponse:
        url, host = build_url(
            self.endpoint, self.addressing_style, bucket, key, encode_query(query)
        )
        # Host is set (and signed) here rather than left to aiohttp, so the two cannot differ;
        # identity encoding because bodies are passed on byte for byte.
        to_sign = {"Host": host, "Accept-Encoding": "identity", **headers}
        data: bytes | bytearray | SizedBody | AsyncIterator[memoryview] | None
        if isinstance(body, SizedBody):
            to_sign["Content-Length"] = str(body.size)
            signed = self._signer.sign(method, url, to_sign, None)
            data = body
        else:
            if not sign_body:
                to_sign["Content-Length"] = str(len(body))
            signed = self._signer.sign(method, url, to_sign, bytes(body) if sign_body else None)
            data = in_memory_payload(body)
        return await self.client().request(
            method,
            URL(url, encoded=True),
            headers=signed,
            data=data,
            allow_redirects=False,
            auto_decompress=False,
        )

    async def read_request(
        self,
        method: str,
        bucket: str | None,
        key: str,
        query: Sequence[tuple[str, str | None]],
        headers: Mapping[str, str],
    ) -> Answer:
        """A bodiless request over the lean pool."""
        assert self._reads is not None
        url, host = build_url(
            self.endpoint, self.addressing_style, bucket, key, encode_query(query)
        )
        to_sign = {"Host": host, "Accept-Encoding": "identity", **headers}
        signed = self._signer.sign(method, url, to_sign, b"")
        return await self._reads.request(method, _request_target(url), signed)

    async def read(self, response: Response) -> bytes:
        """The whole (small, XML) body of a response, which is then released."""
        if isinstance(response, Answer):
            try:
                return await response.read(ANSWER_LIMIT)
            except HttpError as exc:
                raise BackendUnavailable(f"reading an S3 answer failed: {exc}") from exc
            finally:
                response.release()
        try:
            return await read_answer(response)
        except AnswerTooLarge as exc:
            raise BackendUnavailable(f"an S3 answer was refused: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"reading an S3 answer failed: {exc}") from exc
        finally:
            response.release()


def _request_target(url: str) -> str:
    """The origin-form of an absolute URL: its path and query."""
    slash = url.find("/", url.find("//") + 2)
    return url[slash:] if slash >= 0 else "/"


class _Again(BackendUnavailable):
    """A failure worth another try (connection error, 5xx, 429, SlowDown)."""


def is_transient(exc: Exception) -> bool:
    """For a RetryPolicy: whether a failure of this transport is worth another try."""
    return isinstance(exc, _Again)


def _refusal(
    status: int, body: bytes, what: str, bucket_only: bool, checksum_sent: bool
) -> StorageError:
    """The error an answer that is not OK stands for."""
    if checksum_sent and checksum_refused(status, body):
        return refused_checksum(what, status, body)
    if transient(status, body):
        return _Again(f"{what}: HTTP {status}")
    return translate(status, body, what, bucket_only=bucket_only)
