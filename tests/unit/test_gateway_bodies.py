"""How the gateway sends an object's body: small ones whole from the request's task, larger
ones through the pump; a backend read that fails part-way answers alike on both paths."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.audit import AccessEvent
from gateway.request import GatewayRequest, Reply
from gateway.send import CUTTABLE_BYTES, WHOLE_BYTES, ReplySender
from storage.base import ObjectInfo, ObjectStream
from storage.exceptions import BackendUnavailable

CHUNK = 64 * 1024


class Body:
    """A backend body of `size` bytes in CHUNK pieces, failing after `fail_after` pieces."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.size = size
        self.fail_after = fail_after
        self.closed = False

    async def _chunks(self) -> AsyncIterator[bytes]:
        sent = 0
        while sent < self.size:
            if self.fail_after is not None and sent >= self.fail_after * CHUNK:
                raise BackendUnavailable("reading an object body failed: reset")
            piece = min(CHUNK, self.size - sent)
            yield bytes([sent // CHUNK % 256]) * piece
            sent += piece

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def aclose(self) -> None:
        self.closed = True


def _sender() -> ReplySender:
    # The requests carry no credential, so no revocation watch asks the store.
    unused: Any = object()
    return ReplySender(unused)


def _request() -> GatewayRequest:
    return GatewayRequest(
        id="0123456789ABCDEF",
        method="GET",
        raw_path=b"/b/k",
        query_string=b"",
        query=[],
        params={},
        header_list=[],
        headers={},
        client="127.0.0.1",
        started=0.0,
        event=AccessEvent(created_at=datetime.now(UTC), action="GetObject", status=200),
    )


async def _served(size: int, fail_after: int | None = None) -> tuple[list[Any], Any, Body]:
    body = Body(size, fail_after)
    info = ObjectInfo(
        key="k",
        size=size,
        etag="e",
        last_modified=datetime(2026, 1, 1, tzinfo=UTC),
        content_type="application/octet-stream",
    )
    stream = ObjectStream(info, 0, size - 1, body)
    reply = Reply(200, {"content-length": str(size)}, stream=stream)
    request = _request()
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        await asyncio.sleep(3600)

    await _sender().send(request, reply, receive, send, head=False)
    return sent, request.event, body


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK * 3 + 5, WHOLE_BYTES, WHOLE_BYTES + 1, CUTTABLE_BYTES + 1]
)
async def test_a_body_arrives_whole_and_ends_the_answer(size: int) -> None:
    sent, event, body = await _served(size)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 200
    data = b"".join(m["body"] for m in sent[1:])
    assert len(data) == size
    assert data == b"".join(bytes([i % 256]) * CHUNK for i in range(size // CHUNK + 1))[:size]
    assert sent[-1].get("more_body", False) is False
    assert (event.bytes, event.error, event.whole_object) == (size, None, True)
    assert body.closed


async def test_a_small_body_goes_out_in_one_message() -> None:
    sent, _, _ = await _served(CHUNK * 3 + 5)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]


@pytest.mark.parametrize("size", [CHUNK * 4, WHOLE_BYTES * 2, CUTTABLE_BYTES * 2])
async def test_a_body_failing_part_way_stops_short_on_either_path(size: int) -> None:
    """The status line is out: the bytes read go out, the body is never finished (so the
    server closes the connection) and the audit says how far it got and why."""
    sent, event, body = await _served(size, fail_after=2)
    assert sent[0]["status"] == 200
    data = b"".join(m.get("body", b"") for m in sent[1:])
    assert len(data) == 2 * CHUNK
    assert all(m.get("more_body") is True for m in sent[1:])
    assert (event.bytes, event.error, event.whole_object) == (2 * CHUNK, "SlowDown", False)
    assert body.closed


async def test_a_small_body_failing_at_once_sends_only_the_status_line() -> None:
    sent, event, _ = await _served(CHUNK * 2, fail_after=0)
    assert [m["type"] for m in sent] == ["http.response.start"]
    assert (event.bytes, event.error) == (0, "SlowDown")
