"""The S3 listener as one pure ASGI app: the request cycle around every request.

Layers, outermost first: this module (request id, client address, audit row, metrics, and
any error turned into S3 XML, in one place), authentication and authorisation with one
handler per S3 operation (s3_api.py; STS's actions in sts_api.py), then writing the answer
to the client (send.py). Every answer, success or error, leaves one audit row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Receive, Scope, Send

from gateway import sigv4, sts_api
from gateway.audit import AccessEvent, AuditWriter
from gateway.auth import Authenticator
from gateway.errors import as_s3_error, new_request_id
from gateway.metrics import report
from gateway.request import GatewayRequest, Reply
from gateway.request_id import REQUEST_ID
from gateway.s3_api import S3Service
from gateway.send import ReplySender
from gateway.sts_api import StsService
from storage.base import Storage
from sts.scope import Network, client_address
from sts.store import CredentialStore

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
        self.s3 = S3Service(
            storage, self.auth, domain=self.settings.domain, region=self.settings.region
        )
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
                reply = await self.s3.serve(request)
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
