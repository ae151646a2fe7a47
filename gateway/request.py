"""One request as the gateway's parts see it, and the answer they build for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.audit import AccessEvent
from storage.base import ObjectStream
from sts.store import LiveCredential


@dataclass
class GatewayRequest:
    id: str
    method: str
    raw_path: bytes
    query_string: bytes  # as received, for SigV2's sub-resources
    query: list[tuple[str, str]]
    params: dict[str, str]
    header_list: list[tuple[bytes, bytes]]
    headers: dict[str, str]
    client: str | None
    started: float
    event: AccessEvent
    credential: LiveCredential | None = None
    access_key_id: str | None = None  # the one it was signed with, for the access log


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: ObjectStream | None = None


def xml_reply(body: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, {"content-type": "application/xml", **(headers or {})}, body.encode())
