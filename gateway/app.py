"""The S3 listener as one pure ASGI app: authenticate, authorise, serve read-only, audit.

Every answer, success or error, leaves one audit row. Authentication is in auth.py, object
reads in reads.py, listings in listing.py, writing answers in send.py; this module holds the
request cycle.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from gateway import s3xml, sigv4, sts_api
from gateway.audit import AccessEvent, AuditWriter
from gateway.auth import Authenticator
from gateway.errors import S3Error, as_s3_error, new_request_id
from gateway.listing import OutOfScope, ScopedLister
from gateway.metrics import REQUEST_ID, report
from gateway.reads import ObjectReads
from gateway.request import GatewayRequest, Reply, xml_reply
from gateway.routing import BAD_LIST_TYPE, KNOWN_METHODS, NOT_ALLOWED, Target, classify
from gateway.send import ReplySender
from gateway.sts_api import StsService
from storage.base import Storage
from storage.validation import parse_decimal
from sts.scope import Network, client_address
from sts.store import CredentialStore, LiveCredential

log = logging.getLogger("ferry.gateway")


@dataclass(frozen=True)
class GatewaySettings:
    domain: str = ""  # virtual-host style: <bucket>.<domain>
    region: str = "us-east-1"  # what GetBucketLocation answers
    regions: tuple[str, ...] = ()  # regions a client may sign for; empty: any
    trusted_proxies: tuple[Network, ...] = ()
    sigv2: bool = True  # accept Signature Version 2 (boto3's default presigned URLs)
    # Set by `ferry serve --processes N`: a directory the processes share, where bandwidth
    # caps keep their state so they hold across all of them.
    shared_dir: str = ""


class GatewayApp:
    def __init__(
        self,
        *,
        storage: Storage,
        credentials: CredentialStore,
        audit: AuditWriter,
        settings: GatewaySettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sts: tuple[async_sessionmaker[AsyncSession], bytes] | None = None,
    ) -> None:
        """`sts`: the sessions and master key that mint STS session credentials; without it
        the STS actions are not served."""
        self.storage = storage
        self.credentials = credentials
        self.audit = audit
        self.settings = settings or GatewaySettings()
        self.clock = clock
        self.auth = Authenticator(
            credentials,
            clock=clock,
            regions=self.settings.regions,
            sigv2_enabled=self.settings.sigv2,
        )
        self.reads = ObjectReads(storage)
        self.sts = StsService(sts[0], sts[1], self.auth, clock=clock) if sts else None
        self.sender = ReplySender(credentials, shared_dir=self.settings.shared_dir)

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
        return client_address(
            str(peer[0]) if peer else None,
            headers.get("x-forwarded-for"),
            self.settings.trusted_proxies,
        )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        header_list = list(scope["headers"])
        headers: dict[str, str] = {}
        for name, value in header_list:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        query_string = scope.get("query_string", b"")
        query = sigv4.parse_query(query_string)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        request = GatewayRequest(
            id=new_request_id(),
            method=scope["method"],
            raw_path=raw_path,
            query_string=query_string,
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
        reply: Reply | None
        try:
            if self.sts is not None and sts_api.is_sts_request(request.method, raw_path, headers):
                reply = await self.sts.serve(request, receive)
            else:
                reply = await self._serve(request)
        except Exception as exc:  # translate anything at this edge; never a trace
            reply = None
            error = as_s3_error(exc)
            if error is not exc and error.code == "InternalError":
                log.exception("request %s failed", request.id)
            response = error.response(
                request_id=request.id, resource=raw_path.decode("latin-1"), head=head
            )
            event.error = error.code
        try:
            if reply is None:
                event.status = response.status_code
                await response(scope, receive, send)
            else:
                event.status = reply.status
                await self.sender.send(request, reply, receive, send, head=head)
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

    # authentication and authorisation

    async def _serve(self, request: GatewayRequest) -> Reply:
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
        if request.method not in KNOWN_METHODS or target.operation == NOT_ALLOWED:
            # Before authentication, as S3 answers: the method rules out every resource.
            raise S3Error(
                "MethodNotAllowed", "The specified method is not allowed against this resource."
            )
        bucket_prefix = f"/{target.bucket}" if target.virtual_host else ""
        credential = await self.auth.authenticate(request, bucket_prefix=bucket_prefix)
        if target.write or target.operation.startswith(("Bucket:", "Object:")):
            raise S3Error("AccessDenied", "Access Denied")
        if target.operation == BAD_LIST_TYPE:
            raise S3Error("InvalidArgument", "Invalid List Type specified in Request")
        if target.operation == "ListBuckets":
            body = s3xml.list_buckets(
                credential.scope.bucket, credential.not_before, str(credential.user_id)
            )
            return xml_reply(body)
        if target.bucket != credential.scope.bucket:
            raise S3Error("AccessDenied", "Access Denied")
        if target.key is None:
            return await self._bucket_operation(request, target, credential)
        return await self.reads.serve(request, target, credential)

    async def _bucket_operation(
        self, request: GatewayRequest, target: Target, credential: LiveCredential
    ) -> Reply:
        if target.operation in ("HeadBucket", "GetBucketLocation"):
            # The bucket is registered, but its backend bucket may be gone: S3's answer for a
            # bucket that does not exist is NoSuchBucket, not a 200.
            if not await self.storage.bucket_exists(credential.backend_bucket):
                raise S3Error("NoSuchBucket", "The specified bucket does not exist")
            if target.operation == "HeadBucket":
                return Reply(headers={"x-amz-bucket-region": self.settings.region})
            return xml_reply(s3xml.location(self.settings.region))
        return await self._list(request, credential, v2=target.operation == "ListObjectsV2")

    async def _list(
        self, request: GatewayRequest, credential: LiveCredential, *, v2: bool
    ) -> Reply:
        p = request.params
        encoding = p.get("encoding-type")
        if encoding is not None and encoding != "url":
            raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request")
        try:
            # S3 reads max-keys as a 32-bit integer and caps what it returns at 1000.
            asked = parse_decimal(p.get("max-keys", "1000"), maximum=2**31 - 1)
        except ValueError:
            raise S3Error(
                "InvalidArgument", "Provided max-keys not an integer or within integer range"
            ) from None
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
                max_keys=min(asked, 1000),
            )
        except OutOfScope:
            raise S3Error("AccessDenied", "Access Denied") from None
        body = s3xml.list_objects(
            v2=v2,
            bucket=credential.scope.bucket,
            prefix=prefix,
            delimiter=delimiter,
            max_keys=asked,  # echoed as asked, as S3 does; at most 1000 are listed
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
        return xml_reply(body)


def _encode_token(name: str) -> str:
    # Unpadded: a token is pasted into URLs, where '=' invites double decoding.
    raw = base64.urlsafe_b64encode(name.encode("utf-8", errors="surrogateescape"))
    return raw.decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None
