"""Standard Webhooks signatures (https://www.standardwebhooks.com/): what receivers verify.

The secret is `whsec_` + base64 of 32 random bytes; each delivery carries `webhook-id` (the
event's id, the same on every retry, so receivers can drop duplicates), `webhook-timestamp`
(unix seconds) and `webhook-signature: v1,<base64 of HMAC-SHA256(key, "id.timestamp.body")>`.
Libraries in many languages (PyPI `standardwebhooks`) verify exactly this.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
