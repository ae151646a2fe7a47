"""What a credential may read: one bucket, key prefixes, optionally client networks.

Prefix checks are byte-wise on the decoded key with no normalisation: `share/../x` is not
under `share/` as far as S3 is concerned, and neither is it here. (For str, `startswith` and
ordering by code point match UTF-8 byte order exactly.)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

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
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise InvalidRequest(f"not a CIDR: {cidr!r}") from None
    return tuple(networks)


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
