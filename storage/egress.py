"""The egress policy: which addresses Ferry may connect to on a user's behalf.

Every endpoint a user or a request supplies (transfer destinations, the dashboard's connection
check, and later import sources and webhooks) is reached only through `EgressPolicy`. A user
who could name `127.0.0.1:5432`, `169.254.169.254` or a `10.x` host would otherwise make
Ferry reach into the provider's own network (SSRF) and read back what answered.

The policy holds at connection time, not only when a form is checked: `session()` makes an
aiohttp session whose resolver checks every address a name resolves to and hands aiohttp only
those, so aiohttp connects to exactly the addresses that were checked. A DNS answer that
changes between a check and a connect (rebinding) is checked again when it is used. aiohttp
does not ask a resolver about an IP literal, so a request hook checks those.

Refused unless listed in `allowed_cidrs`: loopback, private (RFC 1918, ULA), link-local,
CGNAT (100.64.0.0/10), multicast, unspecified, reserved and documentation ranges, in IPv4 and
IPv6, including IPv4 carried inside IPv6 (mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96` and
`64:ff9b:1::/48`, 6to4 and Teredo).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from storage.exceptions import StorageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class EgressRefused(StorageError):
    """An address (or URL) the egress policy does not let Ferry connect to."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """True if `address`, and any IPv4 address inside it, is a globally routed unicast one."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            if address.ipv4_mapped is not None or any(address in net for net in _NAT64):
                # These ranges only ever carry the IPv4 address: it alone decides.
                return is_public(inner)
            if not is_public(inner):
                return False
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_reserved
        or address.is_private
    )


def endpoint_host(url: str) -> tuple[str, int]:
    """(host, port) of a well-formed http(s) endpoint URL without credentials in it;
    EgressRefused saying what is wrong with its form (the address is not looked at)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise EgressRefused("the endpoint URL is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("the endpoint must be an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise EgressRefused("the endpoint URL must not carry a user name or password")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def ip_literal(host: str) -> IPAddress | None:
    """`host` as an IP address if it is one (brackets and an IPv6 zone dropped), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def parse_cidrs(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`cidrs` as networks; ValueError names the first one that is not a network."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ValueError(f"{cidr!r} is not an IP network: {exc}") from None
    return tuple(networks)


@dataclass(frozen=True)
class EgressPolicy:
    """Public addresses, plus the networks in `allowed` (for tests and private deployments).

    `resolver`: the name resolver to check and to connect with (aiohttp's threaded one by
    default); tests inject one that lies.
    """

    allowed: tuple[IPNetwork, ...] = ()
    resolver: AbstractResolver | None = field(default=None, compare=False)

    @classmethod
    def from_cidrs(cls, cidrs: Iterable[str]) -> EgressPolicy:
        return cls(parse_cidrs(cidrs))

    def permits(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            inner = _embedded_ipv4(address)
            if inner is not None:
                candidates.append(inner)
        for candidate in candidates:
            if any(candidate.version == net.version and candidate in net for net in self.allowed):
                return True
        return is_public(address)

    def check_address(self, address: str | IPAddress) -> IPAddress:
        """The address, parsed; EgressRefused if the policy does not allow it."""
        ip = ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address
        if not self.permits(ip):
            raise EgressRefused(f"destination address {ip} is not allowed")
        return ip

    def check_url(self, url: str) -> tuple[str, int]:
        """(host, port) of an http(s) URL fit to connect to; EgressRefused otherwise.

        Only the URL's form and an IP-literal host are checked here: a name is checked when
        it is resolved (`resolve`, or the session's resolver at connection time).
        """
        host, port = endpoint_host(url)
        literal = ip_literal(host)
        if literal is not None:
            self.check_address(literal)
        return host, port

    async def resolve(self, host: str, port: int = 0) -> list[ResolveResult]:
        """Every address `host` resolves to, all of them allowed; else EgressRefused."""
        literal = ip_literal(host)
        if literal is not None:
            self.check_address(literal)
            family = socket.AF_INET if literal.version == 4 else socket.AF_INET6
            return [_result(host, str(literal), port, family)]
        resolver = self.resolver or aiohttp.ThreadedResolver()
        try:
            answers = await resolver.resolve(host, port, family=socket.AF_UNSPEC)
        except OSError as exc:
            raise EgressRefused(f"the endpoint's host {host!r} does not resolve") from exc
        finally:
            if self.resolver is None:
                await resolver.close()
        if not answers:
            raise EgressRefused(f"the endpoint's host {host!r} does not resolve")
        # Every answer is checked, not just the first: a name that maps to one public and
        # one private address is refused whole, whichever aiohttp would have tried first.
        for answer in answers:
            self.check_address(answer["host"])
        return answers

    async def check_endpoint(self, url: str) -> None:
        """Form and every resolved address of `url`; what the API runs before accepting it."""
        host, port = self.check_url(url)
        await self.resolve(host, port)

    def session(self, **kwargs: Any) -> aiohttp.ClientSession:
        """An aiohttp session that connects only where this policy allows.

        `connector_limit` sets the pool size; other keyword arguments go to ClientSession.
        Redirects are never followed by Ferry's S3 clients (`allow_redirects=False` on every
        call); the hook below also checks each request's URL, redirects included.
        """
        limit = kwargs.pop("connector_limit", 64)
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._on_request_start)
        connector = aiohttp.TCPConnector(limit=limit, resolver=_CheckedResolver(self))
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace], **kwargs)

    async def _on_request_start(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        literal = ip_literal(params.url.host or "")
        if literal is not None:  # a name: the connector's resolver checks what it resolves to
            self.check_address(literal)


class _CheckedResolver(AbstractResolver):
    """aiohttp's resolver, answering only with addresses the policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return await self._policy.resolve(host, port)

    async def close(self) -> None:
        return None


def _result(host: str, address: str, port: int, family: int) -> ResolveResult:
    return {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }
