"""What a credential may read: one bucket, key prefixes, optionally client networks.

Prefix checks are byte-wise on the decoded key with no normalisation: `share/../x` is not
under `share/` as far as S3 is concerned, and neither is it here. (For str, `startswith` and
ordering by code point match UTF-8 byte order exactly.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from storage import egress
from sts.exceptions import InvalidRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_PREFIXES = 100


def normalise_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """Sorted, without duplicates or prefixes already covered by a shorter one."""
    result: list[str] = []
    for prefix in sorted(set(prefixes)):
        if len(prefix.encode()) > 1024:
            raise InvalidRequest("a prefix is longer than S3's 1024-byte key limit")
        if not result or not prefix.startswith(result[-1]):
            result.append(prefix)
    return tuple(result)


def parse_cidrs(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """storage.egress.parse_cidrs, refusing with the request's error."""
    try:
        return egress.parse_cidrs(cidrs)
    except ValueError as exc:
        raise InvalidRequest(f"not a CIDR: {exc}") from None


@dataclass(frozen=True)
class Scope:
    bucket: str
    prefixes: tuple[str, ...]  # normalised
    networks: tuple[Network, ...] = ()

    def allows_key(self, key: str) -> bool:
        return any(key.startswith(p) for p in self.prefixes)

    def is_ancestor(self, key: str) -> bool:
        """True when `key` names a folder above an allowed prefix (`share` for `share/x/`)."""
        return any(p.startswith(key) and p != key for p in self.prefixes)

    def allows_address(self, address: str | None) -> bool:
        if not self.networks:
            return True
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)


def within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    hop of X-Forwarded-For that is not one (nobody else may claim an address)."""
    if peer is None or not forwarded_for or not within(peer, trusted):
        return peer
    # Walk from the right: the first hop not among our proxies is the client.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not within(hop, trusted):
            # Only an address is believed, without an IPv6 zone: junk names no client, and
            # a long value overflowed the audit column, losing the whole batch.
            try:
                return str(ipaddress.ip_address(hop.split("%", 1)[0]))
            except ValueError:
                return None
    return peer
