"""The S3 listener as one pure ASGI app: authenticate, authorise, serve read-only, audit.

Order of checks, as S3 does them: a signature is verified before anything about the
credential's state is revealed (revoked, expired, token), so a key id alone tells a prober
nothing. Every answer, success or error, leaves one audit row.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from starlette.types import Message, Receive, Scope, Send

from gateway import s3xml, sigv4
from gateway.audit import AccessEvent, AuditWriter
from gateway.errors import S3Error, error_response, new_request_id
from gateway.listing import OutOfScope, ScopedLister
from gateway.metrics import REQUEST_ID, report
from gateway.objects import check_conditions, object_headers, parse_range
from gateway.routing import Target, classify
from storage.base import ObjectInfo, ObjectStream, Storage
from storage.exceptions import (
    BackendUnavailable,
    InvalidKey,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
)
from storage.throttle import SharedTokenBucket, TokenBucket
from storage.validation import resolve_range
from sts.keys import hash_token, looks_like_access_key_id
from sts.scope import Network
from sts.store import CredentialStore, LiveCredential

log = logging.getLogger("ferry.gateway")

_EXPIRED = "The provided token has expired."
# How often a download under way asks whether its credential was revoked; bodies smaller than
# CUTTABLE_BYTES go out in a chunk or two and are not watched.
REVOKED_POLL_S = 0.25
CUTTABLE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    domain: str = ""  # virtual-host style: <bucket>.<domain>
    region: str = "us-east-1"  # what GetBucketLocation answers
    regions: tuple[str, ...] = ()  # regions a client may sign for; empty: any
    trusted_proxies: tuple[Network, ...] = ()
    # Set by `ferry serve --processes N`: a directory the processes share, where bandwidth
    # caps keep their state so they hold across all of them.
    shared_dir: str = ""


@dataclass
class _Request:
    id: str
    method: str
    raw_path: bytes
    query: list[tuple[str, str]]
    params: dict[str, str]
    header_list: list[tuple[bytes, bytes]]
    headers: dict[str, str]
    client: str | None
    started: float
    event: AccessEvent
    credential: LiveCredential | None = None
    access_key_id: str | None = None  # the one it was signed with, for the access log
    extra_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: ObjectStream | None = None


class GatewayApp:
    def __init__(
        self,
        *,
        storage: Storage,
        credentials: CredentialStore,
        audit: AuditWriter,
        settings: GatewaySettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.storage = storage
        self.credentials = credentials
        self.audit = audit
        self.settings = settings or GatewaySettings()
        self.clock = clock
        self._throttles: dict[str, TokenBucket | SharedTokenBucket] = {}

    def _new_throttle(self, access_key_id: str, rate: int) -> TokenBucket | SharedTokenBucket:
        if not self.settings.shared_dir:
            return TokenBucket(rate)
        return SharedTokenBucket(Path(self.settings.shared_dir) / f"rate-{access_key_id}", rate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._handle(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()
        self.audit.start()
        self.credentials.start()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await self.credentials.close()
        await self.audit.close()
        await send({"type": "lifespan.shutdown.complete"})

    # the request cycle

    def _client_address(self, scope: Scope, headers: dict[str, str]) -> str | None:
        peer = scope.get("client")
        address = str(peer[0]) if peer else None
        forwarded = headers.get("x-forwarded-for")
        if address is None or not forwarded or not self._trusted(address):
            return address
        # Walk from the right: the first hop not among our proxies is the client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if not self._trusted(hop):
                # Only an address is believed, without an IPv6 zone: junk names no client,
                # and a long value overflowed the audit column, losing the whole batch.
                try:
                    return str(ipaddress.ip_address(hop.split("%", 1)[0]))
                except ValueError:
                    return None
        return address

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.settings.trusted_proxies)

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        header_list = list(scope["headers"])
        headers: dict[str, str] = {}
        for name, value in header_list:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        query = sigv4.parse_query(scope.get("query_string", b""))
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        request = _Request(
            id=new_request_id(),
            method=scope["method"],
            raw_path=raw_path,
            query=query,
            params=dict(query),
            header_list=header_list,
            headers=headers,
            client=self._client_address(scope, headers),
            started=time.monotonic(),
            event=AccessEvent(created_at=self.clock(), action="Unknown", status=0),
        )
        event = request.event
        id_token = REQUEST_ID.set(request.id)
        event.client_addr = request.client
        event.user_agent = headers.get("user-agent")
        head = request.method == "HEAD"
        try:
            reply = await self._serve(request)
        except (S3Error, sigv4.SigV4Error) as exc:
            reply = None
            response = error_response(
                exc.code,
                exc.message,
                request_id=request.id,
                resource=raw_path.decode("latin-1"),
                head=head,
                headers=getattr(exc, "headers", None),
            )
            event.error = exc.code
        except Exception as exc:  # translate anything else at this edge; never a trace
            reply = None
            code, message = _storage_error(exc)
            if code == "InternalError":
                log.exception("request %s failed", request.id)
            response = error_response(
                code,
                message,
                request_id=request.id,
                resource=raw_path.decode("latin-1"),
                head=head,
            )
            event.error = code
        try:
            if reply is None:
                event.status = response.status_code
                await response(scope, receive, send)
            else:
                event.status = reply.status
                await self._send(request, reply, receive, send, head=head)
        finally:
            elapsed = time.monotonic() - request.started
            event.duration_ms = int(elapsed * 1000)
            self.audit.record(event)
            report(
                event,
                method=request.method,
                path=raw_path.decode("latin-1"),
                seconds=elapsed,
                access_key_id=request.access_key_id,
            )
            REQUEST_ID.reset(id_token)

    async def _send(
        self, request: _Request, reply: _Reply, receive: Receive, send: Send, *, head: bool
    ) -> None:
        headers = {**reply.headers, "x-amz-request-id": request.id}
        if reply.stream is None:
            headers.setdefault("content-length", str(len(reply.body)))
        raw = [
            (k.encode("latin-1"), v.encode("latin-1", errors="replace")) for k, v in headers.items()
        ]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        if reply.stream is None or head:
            if reply.stream is not None:
                await reply.stream.aclose()
            await send({"type": "http.response.body", "body": b"" if head else reply.body})
            return
        request.event.bytes = await self._pump(request, reply.stream, receive, send)
        info = reply.stream.info
        request.event.whole_object = request.event.bytes == info.size and reply.stream.start == 0

    async def _pump(
        self, request: _Request, stream: ObjectStream, receive: Receive, send: Send
    ) -> int:
        """Stream the body; a client that goes away cancels the backend read."""
        sent = 0
        credential = request.credential
        throttle = None
        if credential is not None and credential.max_bytes_per_second:
            throttle = self._throttles.get(credential.access_key_id)
            if throttle is None or throttle.rate != credential.max_bytes_per_second:
                throttle = self._new_throttle(
                    credential.access_key_id, credential.max_bytes_per_second
                )
                self._throttles[credential.access_key_id] = throttle

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
            # The status line has gone out, so the only honest signal left is a short body:
            # return without finishing it and the server closes the connection. The audit
            # keeps the bytes that did go out and why the rest did not.
            code, _ = _storage_error(failed)
            request.event.error = code
            log.warning(
                "request %s: body ended after %d bytes: %s",
                request.id,
                sent,
                failed,
                exc_info=failed if code == "InternalError" else None,
            )
        return sent

    # authentication and authorisation

    async def _authenticate(self, request: _Request) -> LiveCredential:
        signed = sigv4.parse(request.method, request.query, request.header_list)
        if signed is None:
            raise S3Error("AccessDenied", "Anonymous access is not allowed.")
        credential = None
        if looks_like_access_key_id(signed.access_key_id):
            request.access_key_id = signed.access_key_id
            credential = await self.credentials.get(signed.access_key_id)
        if credential is None:
            raise S3Error(
                "InvalidAccessKeyId",
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        event = request.event
        event.credential_id, event.user_id = credential.id, credential.user_id
        now = self.clock()
        sigv4.check_time(signed, now, regions=self.settings.regions)
        try:
            self._verify(request, signed, credential, now)
        except sigv4.SigV4Error as exc:
            # Signed with a secret rotated in since the cache read the key: read it again.
            fresh = await self.credentials.reread(signed.access_key_id)
            if exc.code != "SignatureDoesNotMatch" or fresh is None or fresh == credential:
                raise
            credential = fresh
            self._verify(request, signed, credential, now)
        expected = credential.session_token_hash
        if expected is not None:
            given = hash_token(signed.security_token) if signed.security_token else ""
            if not hmac.compare_digest(given, expected):
                raise S3Error(
                    "InvalidToken", "The provided token is malformed or otherwise invalid."
                )
        elif signed.security_token is not None:
            raise S3Error("InvalidToken", "This credential takes no session token.")
        if credential.revoked_at is not None:
            raise S3Error(
                "InvalidAccessKeyId", "The AWS Access Key Id you provided has been revoked."
            )
        if now >= credential.expires_at:
            raise S3Error("ExpiredToken", _EXPIRED)
        if now < credential.not_before:
            raise S3Error("AccessDenied", "The credential is not valid yet.")
        if not credential.scope.allows_address(request.client):
            raise S3Error("AccessDenied", "Requests from this address are not allowed.")
        request.credential = credential
        return credential

    @staticmethod
    def _verify(
        request: _Request, signed: sigv4.Signed, credential: LiveCredential, now: datetime
    ) -> None:
        """The signature against the credential's secret, or during a rotation's grace
        period against the previous one too."""
        secrets = credential.secrets(now)
        for tried, secret in enumerate(secrets, 1):
            try:
                sigv4.verify(
                    signed,
                    secret,
                    method=request.method,
                    raw_path=request.raw_path,
                    query=request.query,
                    headers=request.header_list,
                )
                return
            except sigv4.SigV4Error as exc:
                if exc.code != "SignatureDoesNotMatch" or tried == len(secrets):
                    raise

    async def _serve(self, request: _Request) -> _Reply:
        if sum(1 for name, _ in request.header_list if name.lower() == b"host") > 1:
            # RFC 9112 3.2: a request with more than one Host is answered 400. Which bucket
            # (virtual-host style) and which signed host would it mean?
            raise S3Error("InvalidRequest", "A request must carry exactly one Host header.")
        target = classify(
            request.method, request.raw_path, request.params, request.headers, self.settings.domain
        )
        event = request.event
        event.action, event.bucket, event.key = target.operation, target.bucket, target.key
        event.range = request.headers.get("range")
        credential = await self._authenticate(request)
        if target.write or target.operation.startswith(("Bucket:", "Object:")):
            raise S3Error("AccessDenied", "Access Denied")
        if target.operation == "Unknown":
            raise S3Error(
                "NotImplemented",
                "A header or query you provided implies functionality that is not implemented.",
            )
        if target.operation == "ListBuckets":
            body = s3xml.list_buckets(
                credential.scope.bucket, credential.not_before, str(credential.user_id)
            )
            return _xml(body)
        if target.bucket != credential.scope.bucket:
            raise S3Error("AccessDenied", "Access Denied")
        if target.key is None:
            return await self._bucket_operation(request, target, credential)
        return await self._object_operation(request, target, credential)

    async def _bucket_operation(
        self, request: _Request, target: Target, credential: LiveCredential
    ) -> _Reply:
        if target.operation == "HeadBucket":
            return _Reply(headers={"x-amz-bucket-region": self.settings.region})
        if target.operation == "GetBucketLocation":
            return _xml(s3xml.location(self.settings.region))
        return await self._list(request, credential, v2=target.operation == "ListObjectsV2")

    async def _list(self, request: _Request, credential: LiveCredential, *, v2: bool) -> _Reply:
        p = request.params
        encoding = p.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
        try:
            max_keys = min(int(p.get("max-keys", "1000")), 1000)
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer") from None
        if max_keys < 0:
            raise S3Error("InvalidArgument", "max-keys must not be negative")
        prefix, delimiter = p.get("prefix", ""), p.get("delimiter", "")
        token = p.get("continuation-token")
        if v2:
            start_after = p.get("start-after", "")
            position = _decode_token(token) if token is not None else start_after
        else:
            position = p.get("marker", "")
        lister = ScopedLister(self.storage, credential.backend_bucket, credential.backend_prefix)
        try:
            page = await lister.page(
                credential.scope.prefixes,
                prefix=prefix,
                delimiter=delimiter,
                start_after=position,
                max_keys=max_keys,
            )
        except OutOfScope:
            raise S3Error("AccessDenied", "Access Denied") from None
        body = s3xml.list_objects(
            v2=v2,
            bucket=credential.scope.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=max_keys,
            url=encoding == "url",
            objects=page.objects,
            prefixes=page.common_prefixes,
            truncated=page.is_truncated,
            marker=p.get("marker", ""),
            next_marker=page.last_name,
            start_after=p.get("start-after", ""),
            continuation_token=token,
            next_token=_encode_token(page.last_name) if page.last_name else None,
            owner=str(credential.user_id) if (not v2 or p.get("fetch-owner") == "true") else None,
        )
        return _xml(body)

    async def _object_operation(
        self, request: _Request, target: Target, credential: LiveCredential
    ) -> _Reply:
        key = target.key
        assert key is not None
        if not credential.scope.allows_key(key):
            if credential.scope.is_ancestor(key):
                # rclone HEADs a folder's name before listing it: "not a file" is the answer.
                raise S3Error("NoSuchKey", "The specified key does not exist.")
            raise S3Error("AccessDenied", "Access Denied")
        backend_key = credential.backend_prefix + key
        bucket = credential.backend_bucket
        if target.operation == "GetObjectTagging":
            await self.storage.head(bucket, backend_key)
            return _xml(s3xml.tagging())
        if target.operation == "GetObjectAttributes":
            info = await self.storage.head(bucket, backend_key)
            wanted = {
                a.strip().lower()
                for a in request.headers.get("x-amz-object-attributes", "").split(",")
            }
            return _xml(
                s3xml.object_attributes(info, wanted),
                {
                    "last-modified": object_headers(info, {}, overrides_allowed=False)[
                        "last-modified"
                    ]
                },
            )
        span = parse_range(request.headers.get("range"))
        part = request.params.get("partNumber")
        if part is not None:
            span = await self._part_span(bucket, backend_key, part)
        if target.operation == "HeadObject":
            info = await self.storage.head(bucket, backend_key)
            return self._conditional(request, info) or self._object_reply(
                request, info, span, part, stream=None
            )
        try:
            stream = await self.storage.get(
                bucket, backend_key, start=span[0] if span else None, end=span[1] if span else None
            )
        except InvalidRange:
            size = (await self.storage.head(bucket, backend_key)).size
            raise _unsatisfiable(size) from None
        try:
            reply = self._conditional(request, stream.info)
            if reply is not None:
                await stream.aclose()
                return reply
            return self._object_reply(request, stream.info, span, part, stream=stream)
        except BaseException:
            await stream.aclose()
            raise

    def _conditional(self, request: _Request, info: ObjectInfo) -> _Reply | None:
        """The 304 answer, a PreconditionFailed error, or None to serve the object."""
        condition = check_conditions(request.headers, info)
        if condition == 412:
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )
        if condition == 304:
            base = object_headers(info, {}, overrides_allowed=False)
            return _Reply(304, {k: base[k] for k in ("etag", "last-modified")})
        return None

    def _object_reply(
        self,
        request: _Request,
        info: ObjectInfo,
        span: tuple[int | None, int | None] | None,
        part: str | None,
        *,
        stream: ObjectStream | None,
    ) -> _Reply:
        headers = object_headers(info, request.params, overrides_allowed=True)
        if part is not None:
            headers["x-amz-mp-parts-count"] = (
                info.etag.rsplit("-", 1)[1] if "-" in info.etag else "1"
            )
        if stream is not None:
            first, last = stream.start, stream.end
        elif span is None:
            first, last = 0, info.size - 1
        else:
            try:
                first, last = resolve_range(info.size, span[0], span[1])
            except InvalidRange:
                raise _unsatisfiable(info.size) from None
        headers["content-length"] = str(max(0, last - first + 1))
        status = 200
        if span is not None:
            status = 206
            headers["content-range"] = f"bytes {first}-{last}/{info.size}"
        return _Reply(status, headers, stream=stream)

    async def _part_span(self, bucket: str, key: str, part: str) -> tuple[int | None, int | None]:
        if not part.isdigit() or not 1 <= int(part) <= 10_000:
            raise S3Error(
                "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"
            )
        info = await self.storage.head(bucket, key)
        parts = int(info.etag.rsplit("-", 1)[1]) if "-" in info.etag else 1
        if int(part) > parts:
            raise S3Error("InvalidPart", "The requested partnumber is not satisfiable")
        if parts == 1:
            return 0, max(info.size - 1, 0)
        raise S3Error(
            "NotImplemented",
            "partNumber reads of multipart objects are not supported by this backend; use Range",
        )


def _unsatisfiable(size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"content-range": f"bytes */{size}"},
    )


def _xml(body: str, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(200, {"content-type": "application/xml", **(headers or {})}, body.encode())


def _encode_token(name: str) -> str:
    # Unpadded: a token is pasted into URLs, where '=' invites double decoding.
    raw = base64.urlsafe_b64encode(name.encode("utf-8", errors="surrogateescape"))
    return raw.decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


def _storage_error(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, NoSuchKey):
        return "NoSuchKey", "The specified key does not exist."
    if isinstance(exc, NoSuchBucket):
        return "NoSuchBucket", "The specified bucket does not exist"
    if isinstance(exc, InvalidKey):
        return "InvalidArgument", str(exc)
    if isinstance(exc, BackendUnavailable):
        return "SlowDown", "The storage backend is unavailable; please retry."
    return "InternalError", "We encountered an internal error. Please try again."
