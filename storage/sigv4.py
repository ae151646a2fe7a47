"""SigV4's steps, named as botocore/auth.py names them, shared by the signer
(storage/s3_wire.py) and the verifier (gateway/sigv4.py): what one signs, the other checks.
"""

from __future__ import annotations

import hashlib
import hmac

ALGORITHM = "AWS4-HMAC-SHA256"


def canonical_request(
    method: str, uri: str, query: str, headers: str, signed_headers: str, payload_hash: str
) -> str:
    """`headers`: the canonical header block, each `name:value\\n`; `signed_headers`: the
    names joined by `;`."""
    return "\n".join((method, uri, query, headers, signed_headers, payload_hash))


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    """`timestamp` in ISO 8601 basic form (20261204T120000Z); `scope` date/region/service."""
    digest = hashlib.sha256(canonical.encode("utf-8", errors="surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}/aws4_request\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(key: bytes, to_sign: str) -> str:
    return hmac.new(
        key, to_sign.encode("utf-8", errors="surrogateescape"), hashlib.sha256
    ).hexdigest()
