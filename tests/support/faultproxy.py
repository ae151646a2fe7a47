"""A fault-injecting S3 proxy for copy-engine tests: a small aiohttp app in front of a target.

It forwards every request byte for byte (raw path, all headers including Host, so SigV4
signatures still verify upstream), records what it saw, and applies the first matching rule:

    flip         change one byte of the request body on its way to the target
    wrong-etag   forward, then answer with a different ETag than the target gave
    slowdown     answer 503 SlowDown without forwarding
    reset        drop the connection without answering
    forbidden    answer 403 AccessDenied without forwarding
    hold-answer  forward (the target acts on it), then keep the answer back until the test
                 calls `let_through`: a write that landed while its sender has not heard so

Rules are (predicate, action, times): `times` None applies the rule every time it matches.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from tests.support.ferry import free_port

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}


@dataclass(frozen=True)
class Seen:
    """One request as the proxy saw it."""

    method: str
    operation: str
    key: str
    part_number: int | None
    size: int
    action: str | None  # the fault applied, if any
    status: int | None = None
    content_md5: str | None = None  # the request's Content-MD5 header


@dataclass
class Rule:
    matches: Callable[[Seen], bool]
    action: str
    times: int | None = None
    applied: int = 0


def operation(method: str, query: dict[str, list[str]], headers: dict[str, str]) -> str:
    copy = "x-amz-copy-source" in {name.lower() for name in headers}
    if method == "PUT" and "partNumber" in query:
        return "UploadPartCopy" if copy else "UploadPart"
    if method == "PUT":
        return "CopyObject" if copy else "PutObject"
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "POST" and "uploadId" in query:
        return "CompleteMultipartUpload"
    if method == "DELETE" and "uploadId" in query:
        return "AbortMultipartUpload"
    if method == "GET" and "uploadId" in query:
        return "ListParts"
    if method == "GET" and ("list-type" in query or "uploads" in query):
        return "List"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


@dataclass
class FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    seed: int = 1234
    port: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._held: list[asyncio.Future[None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, action: str, matches: Callable[[Seen], bool], times: int | None = None) -> Rule:
        rule = Rule(matches, action, times)
        self.rules.append(rule)
        return rule

    def add_random(self, action: str, share: float, matches: Callable[[Seen], bool]) -> Rule:
        """Apply `action` to about `share` of the matching requests (seeded)."""
        return self.add(action, lambda s: matches(s) and self._rng.random() < share)

    def count(self, operation: str | None = None, key: str | None = None) -> int:
        return sum(
            1
            for s in self.seen
            if (operation is None or s.operation == operation) and (key is None or s.key == key)
        )

    def operations(self) -> Counter[str]:
        return Counter(s.operation for s in self.seen)

    @property
    def holding(self) -> int:
        """Answers kept back by `hold-answer` now."""
        return len(self._held)

    def let_through(self, count: int | None = None) -> None:
        """Relay the `count` oldest answers kept back (all if None)."""
        released = self._held[:count] if count is not None else self._held[:]
        del self._held[: len(released)]
        for waiter in released:
            if not waiter.done():
                waiter.set_result(None)

    async def start(self) -> FaultProxy:
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._client = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self.let_through()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        split = urlsplit(request.raw_path)
        query = parse_qs(split.query, keep_blank_values=True)
        path = unquote(split.path).lstrip("/")
        key = path.split("/", 1)[1] if "/" in path else ""
        body = await request.read()
        part = query.get("partNumber", [None])[0]
        seen = Seen(
            request.method,
            operation(request.method, query, dict(request.headers)),
            key,
            int(part) if part else None,
            len(body),
            None,
            content_md5=request.headers.get("Content-MD5"),
        )
        action = None
        for rule in self.rules:
            if (rule.times is None or rule.applied < rule.times) and rule.matches(seen):
                rule.applied += 1
                action = rule.action
                break
        record = Seen(**{**seen.__dict__, "action": action})
        if action == "slowdown":
            self.seen.append(Seen(**{**record.__dict__, "status": 503}))
            return _error(503, "SlowDown", "Please reduce your request rate.")
        if action == "forbidden":
            self.seen.append(Seen(**{**record.__dict__, "status": 403}))
            return _error(403, "AccessDenied", "Access Denied by the fault proxy")
        if action == "reset":
            self.seen.append(record)
            assert request.transport is not None
            request.transport.abort()
            raise ConnectionResetError("reset by the fault proxy")
        if action == "flip" and body:
            flipped = bytearray(body)
            flipped[len(flipped) // 2] ^= 0xFF
            body = bytes(flipped)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if body:
            headers["Content-Length"] = str(len(body))
        assert self._client is not None
        async with self._client.request(
            request.method,
            URL(self.upstream.rstrip("/") + request.raw_path, encoded=True),
            headers=headers,
            data=_chunks(body) if body else None,
            allow_redirects=False,
        ) as upstream:
            answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            if action == "hold-answer":
                # Counted as the target answered: the write happened whether or not the
                # sender is still there to hear of it.
                self.seen.append(Seen(**{**record.__dict__, "status": upstream.status}))
                waiter = asyncio.get_running_loop().create_future()
                self._held.append(waiter)
                await waiter
            if action == "wrong-etag":
                for name in [n for n in answer_headers if n.lower() == "etag"]:
                    answer_headers[name] = '"0123456789abcdef0123456789abcdef"'
            response = web.StreamResponse(status=upstream.status, headers=answer_headers)
            if request.method == "HEAD" or upstream.status in (204, 304):
                if "Content-Length" in upstream.headers:
                    response.headers["Content-Length"] = upstream.headers["Content-Length"]
                await response.prepare(request)
                if action != "hold-answer":
                    self.seen.append(Seen(**{**record.__dict__, "status": upstream.status}))
                return response
            if "Content-Length" in upstream.headers:
                response.content_length = int(upstream.headers["Content-Length"])
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(256 * 1024):
                await response.write(chunk)
            await response.write_eof()
            if action != "hold-answer":
                self.seen.append(Seen(**{**record.__dict__, "status": upstream.status}))
            return response


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    # aiohttp warns (an error under pytest) when handed a large body as one bytes object.
    for start in range(0, len(body), 1024 * 1024):
        yield body[start : start + 1024 * 1024]


def _error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>faultproxy</RequestId></Error>"
    )
    return web.Response(status=status, body=body.encode(), content_type="application/xml")
