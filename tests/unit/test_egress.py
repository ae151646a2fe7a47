"""The egress policy: what a user-supplied endpoint may resolve to, and what it may not."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from storage.egress import EgressPolicy, EgressRefused, is_public

REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.1.2.3",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "::127.0.0.1",  # IPv4-compatible (deprecated)
]
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_refuses_every_non_public_address(address: str) -> None:
    policy = EgressPolicy()
    with pytest.raises(EgressRefused, match="is not allowed"):
        policy.check_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_allows_public_addresses(address: str) -> None:
    import ipaddress

    assert is_public(ipaddress.ip_address(address))
    EgressPolicy().check_address(address)


def test_allowed_cidrs_open_exactly_their_networks() -> None:
    policy = EgressPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])
    policy.check_address("127.0.0.1")
    policy.check_address("::1")
    policy.check_address("::ffff:127.0.0.1")  # the mapped form of an allowed address
    with pytest.raises(EgressRefused):
        policy.check_address("10.0.0.1")
    with pytest.raises(ValueError, match="not an IP network"):
        EgressPolicy.from_cidrs(["localhost"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9000/", "127.0.0.1 is not allowed"),
        ("http://[::1]:9000", "::1 is not allowed"),
        ("http://[::ffff:127.0.0.1]/", "is not allowed"),
        ("http://user:pass@s3.example.net/", "user name or password"),
        ("ftp://s3.example.net/", "http:// or https://"),
        ("http://s3.example.net:99999/", "malformed"),
        ("http:///nohost", "http:// or https://"),
    ],
)
def test_check_url(url: str, message: str) -> None:
    with pytest.raises(EgressRefused, match=message):
        EgressPolicy().check_url(url)


class ScriptedResolver(AbstractResolver):
    """Answers each lookup with the next address of a script: a rebinding DNS server."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        address = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    policy = EgressPolicy(resolver=ScriptedResolver("127.0.0.1"))
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 is not allowed"):
        await policy.check_endpoint("http://innocent.example.net:9000")


async def test_a_name_with_one_private_answer_among_public_ones_is_refused() -> None:
    class Mixed(ScriptedResolver):
        async def resolve(
            self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
        ) -> list[ResolveResult]:
            public, private = await super().resolve(host, port), await super().resolve(host)
            private[0]["host"] = "10.0.0.7"
            return public + private

    policy = EgressPolicy(resolver=Mixed("8.8.8.8"))
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.7"):
        await policy.resolve("mixed.example.net", 80)


async def test_dns_rebinding_never_reaches_loopback() -> None:
    """The check sees a public address; the connect's own lookup gets 127.0.0.1 and stops."""
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resolver = ScriptedResolver("8.8.8.8", "127.0.0.1")
    policy = EgressPolicy(resolver=resolver)
    url = f"http://rebind.example.net:{port}/bucket"
    async with server:
        await policy.check_endpoint(url)  # first answer: public, accepted
        async with policy.session() as session:
            with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 is not allowed"):
                await session.get(url, allow_redirects=False)
    assert resolver.asked == ["rebind.example.net", "rebind.example.net"]
    assert connections == 0


async def test_session_refuses_ip_literals_and_allows_listed_ones() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        async with EgressPolicy().session() as session:
            with pytest.raises(EgressRefused):
                await session.get(f"http://127.0.0.1:{port}/")
        allowed = EgressPolicy.from_cidrs(["127.0.0.0/8"])
        async with allowed.session() as session:
            async with session.get(f"http://127.0.0.1:{port}/") as response:
                assert await response.read() == b"ok"
        # A name is checked too, through the real resolver: localhost is loopback.
        async with EgressPolicy().session() as session:
            with pytest.raises((EgressRefused, aiohttp.ClientError)):
                await session.get(f"http://localhost:{port}/")
