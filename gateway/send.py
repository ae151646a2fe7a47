"""Writing a Reply to the client: whole bodies, small ones read whole, larger ones pumped.

A pumped body is throttled to its credential's bandwidth cap, cut when the credential is
revoked, and its backend read cancelled when the client goes away. Once the status line is
out, a failure can only end the body short; the audit row says how far it got and why.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.types import Message, Receive, Send

from gateway.errors import as_s3_error
from gateway.request import GatewayRequest, Reply
from storage.base import ObjectStream
from storage.throttle import SharedTokenBucket, TokenBucket
from sts.store import CredentialStore

log = logging.getLogger("ferry.gateway")

# How often a download under way asks whether its credential was revoked; bodies smaller than
# CUTTABLE_BYTES go out in a chunk or two and are not watched.
REVOKED_POLL_S = 0.25
CUTTABLE_BYTES = 1024 * 1024
# Bodies up to this size are read whole and sent in one message (see _send_small): about what
# the pump holds in its buffers for one download anyway, so memory is no worse.
WHOLE_BYTES = 256 * 1024


class ReplySender:
    def __init__(self, credentials: CredentialStore, *, shared_dir: str = "") -> None:
        """`shared_dir`: where bandwidth caps keep their state when several processes serve
        (`ferry serve --processes N`), so that a cap holds across all of them."""
        self.credentials = credentials
        self.shared_dir = shared_dir
        self._throttles: dict[str, TokenBucket | SharedTokenBucket] = {}

    async def send(
        self, request: GatewayRequest, reply: Reply, receive: Receive, send: Send, *, head: bool
    ) -> None:
        headers = {**reply.headers, "x-amz-request-id": request.id}
        if reply.stream is None and reply.status != 304:
            # A 304 carries no Content-Length: RFC 9110 §15.4.5 allows only the length the
            # 200 would have had, and S3 sends none.
            headers.setdefault("content-length", str(len(reply.body)))
        raw = [
            (k.encode("latin-1"), v.encode("latin-1", errors="replace")) for k, v in headers.items()
        ]
        stream = reply.stream
        start: Message = {"type": "http.response.start", "status": reply.status, "headers": raw}
        if stream is None or head:
            await send(start)
            if stream is not None:
                await stream.aclose()
            await send({"type": "http.response.body", "body": b"" if head else reply.body})
            return
        if stream.end - stream.start < WHOLE_BYTES and self._throttle(request) is None:
            request.event.bytes = await self._send_small(request, stream, start, send)
        else:
            await send(start)
            request.event.bytes = await self._pump(request, stream, receive, send)
        request.event.whole_object = request.event.bytes == stream.info.size and stream.start == 0

    async def _send_small(
        self, request: GatewayRequest, stream: ObjectStream, start: Message, send: Send
    ) -> int:
        """A body of at most WHOLE_BYTES, read whole in the request's own task and sent as
        one message: the pump's two tasks per request and a write per backend chunk cost
        more than the read takes. The answer is the pump's: should the backend read fail,
        the status line goes out with the bytes read and the body stops short."""
        chunks: list[bytes] = []
        failed: Exception | None = None
        try:
            async for chunk in stream.body:
                chunks.append(chunk)
        except Exception as exc:
            failed = exc
        finally:
            await stream.aclose()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        await send(start)
        if failed is None:
            await send({"type": "http.response.body", "body": body})
            return len(body)
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})
        _body_failed(request, failed, len(body))
        return len(body)

    def _throttle(self, request: GatewayRequest) -> TokenBucket | SharedTokenBucket | None:
        """The bandwidth cap of the request's credential, if it has one."""
        credential = request.credential
        if credential is None or not credential.max_bytes_per_second:
            return None
        throttle = self._throttles.get(credential.access_key_id)
        if throttle is None or throttle.rate != credential.max_bytes_per_second:
            throttle = self._new_throttle(credential.access_key_id, credential.max_bytes_per_second)
            self._throttles[credential.access_key_id] = throttle
        return throttle

    def _new_throttle(self, access_key_id: str, rate: int) -> TokenBucket | SharedTokenBucket:
        if not self.shared_dir:
            return TokenBucket(rate)
        return SharedTokenBucket(Path(self.shared_dir) / f"rate-{access_key_id}", rate)

    async def _pump(
        self, request: GatewayRequest, stream: ObjectStream, receive: Receive, send: Send
    ) -> int:
        """Stream the body; a client that goes away cancels the backend read."""
        sent = 0
        credential = request.credential
        throttle = self._throttle(request)

        async def pump() -> None:
            nonlocal sent
            async for chunk in stream.body:
                if throttle is not None:
                    await throttle.take(len(chunk))
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def watch() -> None:
            message: Message = {"type": ""}
            while message["type"] != "http.disconnect":
                message = await receive()

        async def revoked() -> None:
            # A revoke stops downloads under way too, not only new requests: a leaked key
            # must stop moving bytes within the second. A lookup is a dict read while the
            # store's background round keeps the key fresh.
            assert credential is not None
            while True:
                await asyncio.sleep(REVOKED_POLL_S)
                try:
                    live = await self.credentials.get(credential.access_key_id)
                except Exception as exc:
                    # The database is out of reach: new requests are refused meanwhile, but
                    # a download that was allowed goes on rather than every one being cut.
                    log.debug("request %s: revocation check failed: %s", request.id, exc)
                    continue
                if live is None or live.revoked_at is not None:
                    return

        pumping = asyncio.ensure_future(pump())
        watching = asyncio.ensure_future(watch())
        tasks = {pumping, watching}
        if credential is not None and stream.end - stream.start >= CUTTABLE_BYTES:
            tasks.add(asyncio.ensure_future(revoked()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await stream.aclose()
        if not done & {pumping, watching}:
            # Cut short like a failed backend read (the status line has gone out).
            request.event.error = "CredentialRevoked"
            log.info("request %s: credential revoked after %d bytes were sent", request.id, sent)
            return sent
        failed = pumping.exception() if pumping.done() and not pumping.cancelled() else None
        if failed is not None:
            _body_failed(request, failed, sent)
        return sent


def _body_failed(request: GatewayRequest, failed: BaseException, sent: int) -> None:
    # The status line has gone out, so the only honest signal left is a short body:
    # return without finishing it and the server closes the connection. The audit
    # keeps the bytes that did go out and why the rest did not.
    code = as_s3_error(failed).code
    request.event.error = code
    log.warning(
        "request %s: body ended after %d bytes: %s",
        request.id,
        sent,
        failed,
        exc_info=failed if code == "InternalError" else None,
    )
