"""Hostile framing and headers at a real `ferry serve`, byte for byte over raw sockets.

What reaches the gateway here is exactly what an attacker (or a confused proxy) would send:
uvicorn's real HTTP parser decides the framing, the gateway decides identity, bucket and
client address. Two users share one installation: alice (bucket `alice-a`) and bob (bucket
`bob-b`, holding `SECRET`). Every test asserts that bob's bytes never come back on a
connection that alice (or nobody) authenticated, and that the trick is refused or harmless.

The gateway is configured for virtual-host style (`<bucket>.s3.test`); a second instance
trusts 127.0.0.1 as a proxy, to check that X-Forwarded-For is then believed exactly as far
as it should be.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from db.models import AuditLog
from db.urls import sync_url
from storage.local import LocalStorage
from tests.support.ferry import Ferry, free_port, http
from tests.support.signing import sign

DOMAIN = "s3.test"
SECRET = b"BOB-SECRET-" + secrets.token_hex(8).encode()
ALICE_DOC = b"alice's own document"


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Site:
    ferry: Ferry
    database_url: str
    port: int  # the gateway that trusts no proxy
    proxied_port: int  # the gateway that trusts 127.0.0.1 as a proxy
    alice: dict[str, Any]
    bob: dict[str, Any]
    alice_10_net: dict[str, Any]  # alice's credential restricted to 10.0.0.0/8

    def audit_addresses(self, user_agent: str) -> list[str | None]:
        """client_addr of the audit rows written for requests with this User-Agent."""
        engine = sa.create_engine(sync_url(self.database_url))
        try:
            deadline = time.monotonic() + 10
            while True:
                with engine.connect() as conn:
                    rows = conn.execute(
                        sa.select(AuditLog.client_addr).where(AuditLog.user_agent == user_agent)
                    ).all()
                if rows or time.monotonic() > deadline:
                    return [r[0] for r in rows]
                time.sleep(0.1)
        finally:
            engine.dispose()


async def _seed(root: Path) -> None:
    storage = LocalStorage(root)

    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    await storage.put("alice-a", "doc.txt", once(ALICE_DOC), size=len(ALICE_DOC))
    await storage.put("bob-b", "secret", once(SECRET), size=len(SECRET))
    await storage.close()


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    ferry = Ferry.create(
        tmp_path_factory.mktemp("header-tricks"), database_url, gateway_domain=DOMAIN
    )
    users = {}
    for name in ("alice", "bob"):
        users[name] = ferry.create_user(f"{name}-tricks@example.com")
    ferry.run("buckets", "create", "alice-a", "--owner", "alice-tricks@example.com")
    ferry.run("buckets", "create", "bob-b", "--owner", "bob-tricks@example.com")
    asyncio.run(_seed(ferry.workdir / "storage"))
    ferry.serve("--no-worker")
    proxied = dict(ferry.env)
    proxied_port = free_port()
    proxied.update(
        FERRY_GATEWAY_LISTEN=f"127.0.0.1:{proxied_port}",
        FERRY_API_LISTEN=f"127.0.0.1:{free_port()}",
        FERRY_GATEWAY_TRUSTED_PROXIES="127.0.0.1/32",
    )
    ferry.serve("--no-worker", env=proxied)

    def issue(user: str, bucket: str, **body: Any) -> dict[str, Any]:
        status, answer = http(
            "POST",
            ferry.api_url + "/api/portability/credentials",
            body={"bucket": bucket, **body},
            token=users[user]["api_key"],
        )
        assert status == 201, answer
        return dict(answer)

    try:
        yield Site(
            ferry,
            database_url,
            int(ferry.gateway_url.rsplit(":", 1)[1]),
            proxied_port,
            issue("alice", "alice-a"),
            issue("bob", "bob-b"),
            issue("alice", "alice-a", allowed_cidrs=["10.0.0.0/8"]),
        )
    finally:
        ferry.stop()


# raw HTTP/1.1


def request_bytes(
    cred: dict[str, Any],
    url: str,
    *,
    method: str = "GET",
    host: str | None = None,
    target: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    signed_headers: dict[str, str] | None = None,
) -> bytes:
    """A request signed by botocore for `url`, written out by hand.

    `host` and `target` replace what goes on the wire after signing; `extra` headers are
    added unsigned, as a proxy in front would add them.
    """
    signed = sign(
        url,
        access_key_id=cred["access_key_id"],
        secret=cred["secret_access_key"],
        token=cred["session_token"],
        method=method,
        headers=signed_headers,
    )
    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    lines = [f"{method} {target or path} HTTP/1.1", f"Host: {host or parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in signed.headers.items() if k.lower() != "host"]
    lines += [f"{k}: {v}" for k, v in extra or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(port: int, data: bytes, *, idle: float = 1.5) -> tuple[bytes, bool]:
    """Send `data` on one connection; everything the server answered, and whether it closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=idle) as sock:
        sock.sendall(data)
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not chunk:
                return received, True
            received += chunk


def replies(data: bytes) -> list[Reply]:
    out: list[Reply] = []
    while data.startswith(b"HTTP/1."):
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", len(rest)))
        out.append(Reply(int(lines[0].split()[1]), headers, rest[:size]))
        data = rest[size:]
    assert data == b"", f"unparsed bytes after the replies: {data[:200]!r}"
    return out


def path_url(site: Site, path: str) -> str:
    return f"http://127.0.0.1:{site.port}{path}"


def vhost_url(site: Site, bucket: str, path: str) -> str:
    return f"http://{bucket}.{DOMAIN}:{site.port}{path}"


def bobs_get(site: Site) -> bytes:
    """A request bob really signed for his own secret: what a smuggler would hide."""
    return request_bytes(site.bob, path_url(site, "/bob-b/secret"))


def test_bobs_own_request_works(site: Site) -> None:
    # The baseline the tricks below must not reach: bob's signed request yields SECRET.
    data, _ = exchange(site.port, bobs_get(site))
    (reply,) = replies(data)
    assert (reply.status, reply.body) == (200, SECRET)


def assert_refused_without_secret(data: bytes, closed: bool) -> list[Reply]:
    assert SECRET not in data
    got = replies(data)
    assert got, "no answer at all"
    assert got[0].status == 400, got[0]
    assert len(got) == 1 and closed, "the connection stayed open after a framing error"
    return got


# (a)-(c) conflicting or obfuscated framing, each hiding bob's signed request


def smuggling(site: Site, framing: list[tuple[str, str]], body: bytes) -> tuple[bytes, bool]:
    alice = request_bytes(site.alice, path_url(site, "/alice-a/doc.txt"), extra=framing, body=body)
    return exchange(site.port, alice)


def chunked_then(hidden: bytes) -> bytes:
    return b"0\r\n\r\n" + hidden


def test_content_length_with_transfer_encoding_is_refused(site: Site) -> None:
    hidden = bobs_get(site)
    body = chunked_then(hidden)
    data, closed = smuggling(
        site, [("Content-Length", str(len(body))), ("Transfer-Encoding", "chunked")], body
    )
    assert_refused_without_secret(data, closed)


def test_transfer_encoding_before_content_length_is_refused(site: Site) -> None:
    hidden = bobs_get(site)
    body = chunked_then(hidden)
    data, closed = smuggling(
        site, [("Transfer-Encoding", "chunked"), ("Content-Length", "5")], body
    )
    assert_refused_without_secret(data, closed)


def test_two_different_content_lengths_are_refused(site: Site) -> None:
    hidden = bobs_get(site)
    data, closed = smuggling(
        site, [("Content-Length", "0"), ("Content-Length", str(len(hidden)))], hidden
    )
    assert_refused_without_secret(data, closed)


@pytest.mark.parametrize(
    "framing",
    [
        [("Transfer-Encoding", "chunked, identity")],
        [("Transfer-Encoding", "identity, chunked"), ("Content-Length", "5")],
        [("Transfer-Encoding ", "chunked")],
        [("Transfer-Encoding", "xchunked")],
        [("Transfer-Encoding", " chunked\t")],
        [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "identity")],
    ],
    ids=[
        "chunked-identity",
        "identity-chunked-cl",
        "space-before-colon",
        "xchunked",
        "padded",
        "two-te-headers",
    ],
)
def test_obfuscated_transfer_encoding_is_refused(
    site: Site, framing: list[tuple[str, str]]
) -> None:
    # A proxy in front may read any of these differently from us (chunked or not, which
    # header wins); the only safe answer is none: 400 and the connection closed, so the
    # request hidden behind the chunked terminator is never parsed at all.
    data, closed = smuggling(site, framing, chunked_then(bobs_get(site)))
    assert_refused_without_secret(data, closed)


def test_a_request_hidden_in_a_get_body_is_only_a_body(site: Site) -> None:
    # A GET whose Content-Length covers a whole second request: that request is body bytes,
    # read and ignored, never executed.
    hidden = bobs_get(site)
    alice = request_bytes(
        site.alice,
        path_url(site, "/alice-a/doc.txt"),
        extra=[("Content-Length", str(len(hidden)))],
        body=hidden,
    )
    data, _ = exchange(site.port, alice)
    assert SECRET not in data
    (reply,) = replies(data)
    assert (reply.status, reply.body) == (200, ALICE_DOC)


def test_an_unsigned_request_hidden_in_a_body_gets_nothing(site: Site) -> None:
    hidden = f"GET /bob-b/secret HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n\r\n".encode()
    for framing in (
        [("Content-Length", str(len(hidden) + 5)), ("Transfer-Encoding", "chunked")],
        [("Content-Length", str(len(hidden)))],
    ):
        data, _ = smuggling(site, framing, chunked_then(hidden))
        assert SECRET not in data
        assert sum(r.status == 200 for r in replies(data)) <= 1


# (e) virtual-host style and the Host header


def test_virtual_host_works_for_the_signed_bucket(site: Site) -> None:
    data, _ = exchange(site.port, request_bytes(site.alice, vhost_url(site, "alice-a", "/doc.txt")))
    (reply,) = replies(data)
    assert (reply.status, reply.body) == (200, ALICE_DOC)


def test_host_swapped_to_another_bucket_after_signing(site: Site) -> None:
    raw = request_bytes(
        site.alice,
        vhost_url(site, "alice-a", "/secret"),
        host=f"bob-b.{DOMAIN}:{site.port}",
    )
    data, _ = exchange(site.port, raw)
    (reply,) = replies(data)
    assert reply.status == 403 and b"SignatureDoesNotMatch" in reply.body
    assert SECRET not in data


def test_signing_for_another_buckets_host_is_denied(site: Site) -> None:
    data, _ = exchange(site.port, request_bytes(site.alice, vhost_url(site, "bob-b", "/secret")))
    (reply,) = replies(data)
    assert reply.status == 403 and b"AccessDenied" in reply.body
    assert SECRET not in data


def test_a_path_naming_another_bucket_under_a_virtual_host_stays_in_the_host_bucket(
    site: Site,
) -> None:
    # Host names alice-a, so `/bob-b/secret` is alice's key `bob-b/secret`: absent.
    raw = request_bytes(site.alice, vhost_url(site, "alice-a", "/bob-b/secret"))
    data, _ = exchange(site.port, raw)
    (reply,) = replies(data)
    assert reply.status == 404 and b"NoSuchKey" in reply.body
    assert SECRET not in data


def test_duplicate_host_headers_are_refused(site: Site) -> None:
    for first, second in [("alice-a", "bob-b"), ("bob-b", "alice-a")]:
        raw = request_bytes(
            site.alice,
            vhost_url(site, first, "/secret"),
            extra=[("Host", f"{second}.{DOMAIN}:{site.port}")],
        )
        data, _ = exchange(site.port, raw)
        (reply,) = replies(data)
        # Refused before the bucket or the signature is looked at (RFC 9112 3.2).
        assert reply.status == 400 and b"<Code>InvalidRequest</Code>" in reply.body, reply
        assert SECRET not in data


def test_absolute_form_naming_another_host_is_denied(site: Site) -> None:
    # The request line names bob's bucket; alice signed `/secret` on her own host. The
    # server takes the bucket from Host, never from the request line's authority.
    vhost = (f"http://bob-b.{DOMAIN}:{site.port}/secret", 404, b"NoSuchKey")
    path_style = (f"http://127.0.0.1:{site.port}/bob-b/secret", 403, b"SignatureDoesNotMatch")
    for target, status, error in (vhost, path_style):
        raw = request_bytes(site.alice, vhost_url(site, "alice-a", "/secret"), target=target)
        data, _ = exchange(site.port, raw)
        (reply,) = replies(data)
        assert reply.status == status and error in reply.body, (target, reply)
        assert SECRET not in data


# (f) X-Forwarded-* from a peer that is not a trusted proxy


FORWARDING = [
    ("X-Forwarded-For", "10.1.2.3"),
    ("X-Forwarded-Host", f"bob-b.{DOMAIN}"),
    ("X-Forwarded-Proto", "https"),
    ("Forwarded", f"for=10.1.2.3;host=bob-b.{DOMAIN};proto=https"),
    ("X-Real-IP", "10.1.2.3"),
]


def test_forwarded_for_from_an_untrusted_peer_does_not_open_a_cidr_credential(
    site: Site,
) -> None:
    agent = f"tricks-{secrets.token_hex(4)}"
    raw = request_bytes(
        site.alice_10_net,
        path_url(site, "/alice-a/doc.txt"),
        extra=[*FORWARDING, ("User-Agent", agent)],
    )
    data, _ = exchange(site.port, raw)
    (reply,) = replies(data)
    assert reply.status == 403 and b"AccessDenied" in reply.body
    assert ALICE_DOC not in data
    assert site.audit_addresses(agent) == ["127.0.0.1"]


def test_forwarded_host_does_not_change_the_bucket(site: Site) -> None:
    agent = f"tricks-{secrets.token_hex(4)}"
    raw = request_bytes(
        site.alice,
        vhost_url(site, "alice-a", "/doc.txt"),
        extra=[*FORWARDING, ("User-Agent", agent)],
    )
    data, _ = exchange(site.port, raw)
    (reply,) = replies(data)
    assert (reply.status, reply.body) == (200, ALICE_DOC)
    assert site.audit_addresses(agent) == ["127.0.0.1"]


def test_a_trusted_proxy_passes_on_the_rightmost_untrusted_hop(site: Site) -> None:
    url = f"http://127.0.0.1:{site.proxied_port}/alice-a/doc.txt"
    cases = [
        # proxy saw 10.1.2.3: allowed
        ("10.1.2.3", 200, "10.1.2.3"),
        # a chain of trusted proxies in front: still 10.1.2.3
        ("10.1.2.3, 127.0.0.1", 200, "10.1.2.3"),
        # the client wrote 10.1.2.3 itself; the proxy appended the real 203.0.113.9
        ("10.1.2.3, 203.0.113.9", 403, "203.0.113.9"),
        # only an address is believed: junk names no client (and once lost the audit
        # batch it was written with, being longer than the column)
        ("not-an-ip", 403, None),
        ("x" * 100, 403, None),
        ("fe80::1%" + "x" * 100, 403, "fe80::1"),
    ]
    for forwarded, status, recorded in cases:
        agent = f"tricks-{secrets.token_hex(4)}"
        raw = request_bytes(
            site.alice_10_net,
            url,
            extra=[("X-Forwarded-For", forwarded), ("User-Agent", agent)],
        )
        data, _ = exchange(site.proxied_port, raw)
        (reply,) = replies(data)
        assert reply.status == status, (forwarded, reply)
        assert site.audit_addresses(agent) == [recorded], forwarded
