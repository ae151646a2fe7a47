"""Object bodies on the wire for the `s3` backend: an upload held to its announced size, and
a download handed out as an async iterator that gives its connection back when closed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from storage.exceptions import BackendUnavailable, IncompleteBody


class SizedBody:
    """The caller's body as an aiohttp payload that must yield exactly `size` bytes.

    aiohttp wraps an exception raised while it sends; the original is kept in `error` so the
    caller sees IncompleteBody (or its own iterator's error), not a connection error.
    """

    def __init__(self, body: AsyncIterator[bytes], size: int) -> None:
        self._body = body
        self.size = size
        self.error: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # One chunk is held back until the next arrives or the body ends: the server must
        # never receive the announced last byte of a body that turns out longer, or it would
        # store a truncated object as complete.
        received = 0
        held = b""
        try:
            async for chunk in self._body:
                received += len(chunk)
                if received > self.size:
                    raise IncompleteBody(f"body is longer than the announced {self.size} bytes")
                if not chunk:
                    continue
                if held:
                    yield held
                held = chunk
            if received < self.size:
                raise IncompleteBody(f"body ended after {received} of {self.size} bytes")
            if held:
                yield held
        except Exception as exc:
            self.error = exc
            raise


# In-memory bodies up to this size go to aiohttp as they are (its cheapest path); larger ones
# as slices of themselves, which aiohttp sends without a copy or a warning.
SEND_CHUNK = 1024 * 1024


def in_memory_payload(
    body: bytes | bytearray,
) -> bytes | bytearray | AsyncIterator[memoryview] | None:
    """What aiohttp sends for an in-memory body (a fresh iterator per call, so a retry
    sends the same bytes again)."""
    if not body:
        return None
    return body if len(body) <= SEND_CHUNK else _slices(body)


async def _slices(body: bytes | bytearray) -> AsyncIterator[memoryview]:
    with memoryview(body) as view:
        for start in range(0, len(view), SEND_CHUNK):
            yield view[start : start + SEND_CHUNK]


class ResponseBody:
    """A GET response's body as an async iterator; `aclose()` gives the connection back."""

    def __init__(self, response: aiohttp.ClientResponse, chunk_size: int) -> None:
        self._response = response
        self._chunks = response.content.iter_chunked(chunk_size)
        self._done = False

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            self._done = True
            self._response.release()
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._done = True
            self._response.close()
            raise BackendUnavailable(f"reading an object body failed: {exc}") from exc

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            # Unread bytes would have to be drained to reuse the connection; dropping it is
            # cheaper for a large object abandoned halfway.
            self._response.close()
