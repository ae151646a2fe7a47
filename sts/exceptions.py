"""Errors of credential issuance and lookup.

StsError
├── InvalidRequest     bad input for issuance (TTL out of range, bad prefix or CIDR)
├── NotFound           no such credential (or not the caller's)
└── Unsealable         a sealed secret that the master key cannot open (wrong key, tampering)
"""

from __future__ import annotations


class StsError(Exception):
    """Base of every sts error."""


class InvalidRequest(StsError):
    pass


class NotFound(StsError):
    pass


class Unsealable(StsError):
    pass
