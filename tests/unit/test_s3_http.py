"""The lean HTTP/1.1 reader (storage/s3_http.py) against a scripted server on loopback.

The server answers each request with the next scripted reply (raw bytes, or a function of
the request), so the edge cases a real S3 server rarely shows on cue can be shown: an idle
connection closed, a silent server, chunked and EOF-framed bodies, a head that never ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from storage.exceptions import BackendUnavailable
from storage.s3_http import HEAD_LIMIT, HIGH_WATER, HttpError, HttpPool, Silent

Reply = bytes | Callable[[bytes], bytes] | None  # None: read the request, then close


def ok(body: bytes, *extra: str) -> bytes:
    head = "\r\n".join(["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *extra])
    return head.encode() + b"\r\n\r\n" + body


class Script:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []
        self.connections = 0
        self.handlers: set[asyncio.Task[None]] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            while self.replies:
                request = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(request)
                reply = self.replies.pop(0)
                if reply is None:
                    break
                writer.write(reply(request) if callable(reply) else reply)
                await writer.drain()
                if b"Connection: close" in (reply if isinstance(reply, bytes) else b""):
                    break
            else:
                await reader.read()  # hold the connection open until the client goes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def scripted(
    replies: list[Reply], **pool_args: float
) -> AsyncIterator[tuple[HttpPool, Script]]:
    script = Script(replies)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpPool("127.0.0.1", port, tls=False, **pool_args)  # type: ignore[arg-type]
    try:
        yield pool, script
    finally:
        await pool.close()
        server.close()
        # Each handler sees its connection end on the next turns of the loop.
        if script.handlers:
            await asyncio.wait(script.handlers, timeout=2)


async def get(pool: HttpPool, path: str = "/b/k", method: str = "GET") -> tuple[int, bytes]:
    answer = await pool.request(method, path, {"Host": "s3"})
    return answer.status, await answer.read(1 << 30)


async def test_a_connection_is_kept_alive_and_reused() -> None:
    async with scripted([ok(b"one"), ok(b"two")]) as (pool, script):
        assert await get(pool) == (200, b"one")
        assert await get(pool, "/b/other?x=1") == (200, b"two")
        assert script.connections == 1
        assert script.requests[1].startswith(b"GET /b/other?x=1 HTTP/1.1\r\nHost: s3\r\n")


async def test_a_head_answer_announcing_a_length_has_no_body() -> None:
    head = b'HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nETag: "e"\r\n\r\n'
    async with scripted([head, ok(b"after")]) as (pool, script):
        answer = await pool.request("HEAD", "/b/k", {"Host": "s3"})
        assert answer.status == 200 and answer.headers["etag"] == '"e"'
        assert answer.content_length == 5000
        answer.release()
        assert await get(pool) == (200, b"after")
        assert script.connections == 1


async def test_chunked_and_connection_framed_bodies() -> None:
    chunked = (
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    eof_framed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    async with scripted([chunked, eof_framed]) as (pool, _):
        assert await get(pool) == (404, b"abcde")
        assert await get(pool) == (200, b"until the end")


async def test_an_idle_connection_the_server_closed_is_replaced_once() -> None:
    # The first connection serves one answer, then the server closes it (as a keep-alive
    # timeout does) when the next request arrives: that request goes again on a new one.
    async with scripted([ok(b"one"), None]) as (pool, script):
        assert await get(pool) == (200, b"one")
        script.replies.append(ok(b"two"))
        assert await get(pool) == (200, b"two")
        assert script.connections == 2


async def test_a_fresh_connection_closed_before_answering_is_an_error() -> None:
    async with scripted([None]) as (pool, script):
        with pytest.raises(HttpError, match="closed"):
            await get(pool)
        assert script.connections == 1


async def test_a_silent_server_times_out_once_and_is_not_retried() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    pool = HttpPool("127.0.0.1", server.sockets[0].getsockname()[1], tls=False, read_timeout=0.3)
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(Silent) as raised:
            await get(pool)
        took = asyncio.get_running_loop().time() - started
        assert isinstance(raised.value, TimeoutError) and isinstance(
            raised.value, BackendUnavailable
        )
        assert 0.25 < took < 1.0
    finally:
        await pool.close()
        server.close()
        await asyncio.sleep(0.05)  # the handler sees the connection end


async def test_a_head_that_never_ends_is_refused() -> None:
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (HEAD_LIMIT + 10) + b"\r\n\r\n"
    async with scripted([endless]) as (pool, _):
        with pytest.raises(HttpError, match="head ran past"):
            await get(pool)


async def test_garbage_is_not_taken_for_an_answer() -> None:
    async with scripted([b"SSH-2.0-OpenSSH_9.6\r\n\r\n"]) as (pool, _):
        with pytest.raises(HttpError, match=r"not HTTP/1\.1"):
            await get(pool)


async def test_an_abandoned_body_closes_its_connection_and_frees_its_slot() -> None:
    big = ok(b"x" * (4 * HIGH_WATER))
    async with scripted([big, ok(b"next")], limit=1) as (pool, script):
        answer = await pool.request("GET", "/b/k", {"Host": "s3"})
        first = await answer.__anext__()
        assert first and len(first) < 4 * HIGH_WATER
        await answer.aclose()
        # One slot: this would wait forever had the abandoned answer kept it.
        assert await asyncio.wait_for(get(pool), 5) == (200, b"next")
        assert script.connections == 2


async def test_a_large_body_arrives_whole_through_back_pressure() -> None:
    body = bytes(range(256)) * (3 * HIGH_WATER // 256)
    async with scripted([ok(body)]) as (pool, _):
        answer = await pool.request("GET", "/b/k", {"Host": "s3"})
        received = bytearray()
        async for chunk in answer:
            received += chunk
            await asyncio.sleep(0)  # a slow reader: the connection pauses and resumes
        assert bytes(received) == body


async def test_a_dropped_answer_gives_its_slot_back() -> None:
    async with scripted([ok(b"a" * 10), ok(b"b")], limit=1) as (pool, _):
        answer = await pool.request("GET", "/b/k", {"Host": "s3"})
        del answer
        assert await asyncio.wait_for(get(pool), 5) == (200, b"b")


async def test_bytes_past_the_announced_length_are_dropped_with_the_connection() -> None:
    async def late(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the head first: the body comes by the counted path
        writer.write(b"body!!HTTP/1.1 200 OK\r\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(late, "127.0.0.1", 0)
    pool = HttpPool("127.0.0.1", server.sockets[0].getsockname()[1], tls=False)
    try:
        assert await get(pool) == (200, b"body!!")
        assert not pool._idle  # not trusted with another request
    finally:
        await pool.close()
        server.close()
        await asyncio.sleep(0.05)
