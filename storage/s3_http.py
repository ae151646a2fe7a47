"""A lean HTTP/1.1 client for the bodiless reads (GET, HEAD) of Ferry's own S3 backend.

Why not aiohttp here: every small GET through the gateway is one backend GET, and aiohttp's
ClientSession spent 0.4-0.6 ms of CPU on each (request and response objects, trace and
timer contexts, a StreamReader, a cookie filter) against ~0.2 ms for the whole of uvicorn's
side. A read needs a status line, headers and a body; this module does that over a pool of
kept-alive connections, parsed by httptools (uvicorn's parser, llhttp).

Only for the endpoint the operator configured: addresses a user supplies keep going through
the egress policy's aiohttp session. Writes stay on aiohttp too (streamed bodies, retries of
in-memory ones), where per-request overhead is small beside the body.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import Mapping
from typing import cast

import httptools
from multidict import CIMultiDict

from storage.exceptions import BackendUnavailable

# A connection's unread body may reach HIGH_WATER before reading from the socket pauses, and
# resumes once the reader has taken it below LOW_WATER: memory per slow client stays bounded.
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
# An answer whose head has not arrived after this many bytes is not an S3 server's.
HEAD_LIMIT = 64 * 1024


class HttpError(BackendUnavailable):
    """A connection failed, closed early, went silent or carried something that is not
    HTTP/1.1."""


class Closed(HttpError):
    """The server closed the connection before the answer was whole."""


class Silent(HttpError, TimeoutError):
    """The server sent nothing for the whole read timeout: a TimeoutError, which callers
    do not retry (a backend silent that long would likely be silent again)."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection, carrying one request at a time."""

    def __init__(self, pool: HttpPool) -> None:
        self._pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.used = 0  # answers completed on this connection
        self._parser: httptools.HttpResponseParser | None = None
        self._head_only = False
        self._head_bytes = 0  # bytes received before the head was complete
        self._header_size = 0
        self._header_pairs: list[tuple[str, str]] = []
        self._status = 0
        self._head_done = False
        self._keep_alive = False
        self._remaining: int | None = None  # body bytes still to come, counted without the parser
        self._framed = False  # Content-Length or chunked: the end is known without EOF
        self.done = False  # the whole answer has arrived
        self._error: BaseException | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._last_data = time.monotonic()
        parser = self._parser
        if parser is None:  # bytes nobody asked for: the connection cannot be trusted again
            self._fail(HttpError("the server sent bytes outside an answer"))
            return
        if self._error is not None:
            return
        remaining = self._remaining
        if remaining is not None and self._head_done:
            if len(data) > remaining:
                # More than the answer announced: keep what it did, trust nothing after.
                data = data[:remaining]
                self._keep_alive = False
            self._remaining = remaining - len(data)
            self._take(data)
            if not self._remaining:
                self._message_complete()
            return
        self._head_bytes += len(data) if not self._head_done else 0
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"the server's answer is not HTTP/1.1: {exc}"))
            return
        if not self._head_done and self._head_bytes > HEAD_LIMIT:
            self._fail(HttpError(f"an answer's head ran past {HEAD_LIMIT} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._parser is not None and not self.done and self._error is None:
            if self._head_done and not self._framed and exc is None:
                self._message_complete()  # an answer framed by the end of the connection
            else:
                self._error = Closed(f"the connection closed: {exc or 'end of stream'}")
        self._wake()

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_size += len(name) + len(value)
        self._header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if self._header_size > HEAD_LIMIT:
            self._fail(HttpError(f"an answer's head ran past {HEAD_LIMIT} bytes"))
            return
        self._status = self._parser.get_status_code()
        # Asked now: the parser forgets the answer's flags once the message is complete.
        self._keep_alive = self._parser.should_keep_alive()
        length, chunked = None, False
        for name, value in self._header_pairs:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "transfer-encoding":
                chunked = True
        bodiless = self._head_only or self._status in (204, 304)
        self._framed = bodiless or chunked or length is not None
        if not bodiless and not chunked and length is not None and length.isdigit():
            # Counted here from now on, not parsed: the parser hands each body piece over
            # as a copy, which for a large object was a fifth of the gateway's CPU.
            self._remaining = int(length)
        self._head_done = True
        if self._head_only:
            # The parser would wait for a body the Content-Length announces; a HEAD has none.
            self._message_complete()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._remaining is not None:
            self._remaining -= len(body)
        self._take(body)

    def _take(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._message_complete()

    # one request

    def send(self, request: bytes, *, head_only: bool) -> None:
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._head_bytes = 0
        self._header_size = 0
        self._header_pairs = []
        self._head_done = False
        self._remaining = None
        self.done = False
        self._last_data = time.monotonic()
        self.transport.write(request)

    async def head(self) -> tuple[int, list[tuple[str, str]]]:
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._status, self._header_pairs

    async def chunk(self) -> bytes:
        """The body bytes that have arrived (several chunks joined), or b"" at its end."""
        while not self._chunks:
            if self.done:
                return b""
            if self._error is not None:
                raise self._error
            await self._wait()
        if len(self._chunks) == 1:
            data = self._chunks.popleft()
        else:
            data = b"".join(self._chunks)
            self._chunks.clear()
        self._buffered -= len(data)
        if self._paused and self._buffered <= LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    @property
    def answered(self) -> bool:
        """Whether any byte of the current answer has arrived."""
        return self._head_bytes > 0 or self._head_done

    def reusable(self) -> bool:
        parser = self._parser
        return (
            self.done
            and not self.closed
            and self._error is None
            and not self._chunks
            and parser is not None
            and self._keep_alive
        )

    def finish(self) -> None:
        """The answer was consumed: ready for the next request."""
        self._parser = None
        self.used += 1

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()

    def _message_complete(self) -> None:
        self._remaining = None
        self.done = True
        self._wake()

    def _fail(self, error: HttpError) -> None:
        self._error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self._timer is None:
            # One timer per read timeout, not one per wait: most waits last microseconds.
            self._timer = loop.call_later(self._pool.read_timeout, self._check_silence)
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _check_silence(self) -> None:
        self._timer = None
        if self._waiter is None:
            return
        silent = time.monotonic() - self._last_data
        timeout = self._pool.read_timeout
        if silent >= timeout:
            self._error = Silent(f"the server was silent for {timeout:g} s")
            self.close()
            self._wake()
        else:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout - silent, self._check_silence)


class Answer:
    """One answer: status, headers, and its body as an async iterator of chunks.

    `release()` hands the connection back once the body has been read to its end; `aclose()`
    (or `release()` before the end) closes it: draining an abandoned large body would cost
    more than a new connection.
    """

    def __init__(
        self, pool: HttpPool, connection: _Connection, status: int, headers: CIMultiDict[str]
    ) -> None:
        self._pool = pool
        self._connection: _Connection | None = connection
        self.status = status
        self.headers = headers
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None

    def __aiter__(self) -> Answer:
        return self

    async def __anext__(self) -> bytes:
        connection = self._connection
        if connection is None:
            raise StopAsyncIteration
        try:
            data = await connection.chunk()
        except BaseException:
            self.aclose_now()
            raise
        if not data:
            self.release()
            raise StopAsyncIteration
        return data

    async def read(self, limit: int) -> bytes:
        """The whole body, refused (HttpError) once it passes `limit` bytes."""
        if self.content_length is not None and self.content_length > limit:
            self.aclose_now()
            raise HttpError(f"the answer announces {self.content_length} bytes")
        data = bytearray()
        async for chunk in self:
            data += chunk
            if len(data) > limit:
                self.aclose_now()
                raise HttpError(f"the answer runs past {limit} bytes")
        return bytes(data)

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.give_back(connection)

    def aclose_now(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            self._pool.give_back(connection)

    async def aclose(self) -> None:
        self.aclose_now()

    def __del__(self) -> None:
        # An answer dropped unread still holds a connection and a pool slot; as aiohttp's
        # responses do, give them back rather than let the pool run dry.
        if self._connection is not None:
            self.aclose_now()


class HttpPool:
    """Kept-alive connections to one host, at most `limit` open at once."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: bool,
        limit: int = 64,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self._tls = ssl.create_default_context() if tls else None
        self.read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._open: set[_Connection] = set()

    async def request(self, method: str, target: str, headers: Mapping[str, str]) -> Answer:
        """Send `method target` with `headers` (Host included) and wait for the answer's head.

        A kept-alive connection the server closed meanwhile fails before any byte of the
        answer: the request goes once more on a new connection (GET and HEAD are safe to
        repeat). Other failures raise HttpError or TimeoutError.
        """
        lines = [f"{method} {target} HTTP/1.1"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        head_only = method == "HEAD"
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = await self._connection()
            try:
                connection.send(request, head_only=head_only)
                status, pairs = await connection.head()
            except Closed:
                if not connection.used or connection.answered:
                    raise
                self._drop(connection)
                connection = None
                connection = await self._connect()
                connection.send(request, head_only=head_only)
                status, pairs = await connection.head()
        except BaseException:
            # Failed or cancelled halfway through an answer: the connection cannot be reused.
            if connection is not None:
                self._drop(connection)
            self._slots.release()
            raise
        return Answer(self, connection, status, CIMultiDict(pairs))

    def give_back(self, connection: _Connection) -> None:
        if connection.reusable():
            connection.finish()
            self._idle.append(connection)
        else:
            self._drop(connection)
        self._slots.release()

    def _drop(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest alive
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self._tls,
                    server_hostname=self.host if self._tls else None,
                ),
                self._connect_timeout,
            )
        except OSError as exc:
            raise HttpError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._open.add(connection)
        return connection
