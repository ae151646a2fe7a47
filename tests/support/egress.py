"""Egress settings for tests whose S3 servers listen on loopback, which the default refuses."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from storage.egress import EgressPolicy

LOOPBACK_CIDRS = ("127.0.0.0/8", "::1/128")
LOOPBACK = EgressPolicy.from_cidrs(LOOPBACK_CIDRS)
LOOPBACK_ENV = {"FERRY_EGRESS_ALLOWED_CIDRS": ",".join(LOOPBACK_CIDRS)}


class FixedResolver(AbstractResolver):
    """Every name resolves to `address`: for made-up public names (s3.example.net) in a
    sandbox without DNS. Tests that use it never connect."""

    def __init__(self, address: str = "93.184.216.34") -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET6 if ":" in self.address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None
