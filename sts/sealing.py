"""Secrets sealed at rest with AES-256-GCM under a key derived from the master key.

The access key id is bound in as associated data, so a sealed secret copied onto another
credential's row does not open. A database dump alone cannot sign a request.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sts.exceptions import Unsealable

_VERSION = b"\x01"
_NONCE_BYTES = 12


def _sealing_key(master_key: bytes, purpose: str) -> bytes:
    # A purpose-bound subkey: the master key itself never touches data, and a value sealed
    # for one purpose does not open as another.
    return hmac.new(master_key, f"ferry/{purpose}/v1".encode(), hashlib.sha256).digest()


def seal_text(master_key: bytes, purpose: str, context: str, text: str) -> bytes:
    """Seal `text`; it opens only with the same master key, purpose and context."""
    nonce = os.urandom(_NONCE_BYTES)
    box = AESGCM(_sealing_key(master_key, purpose))
    return _VERSION + nonce + box.encrypt(nonce, text.encode(), context.encode())


def unseal_text(master_key: bytes, purpose: str, context: str, sealed: bytes) -> str:
    if sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE_BYTES + 16:
        raise Unsealable("unknown sealing format")
    nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
    try:
        plain = AESGCM(_sealing_key(master_key, purpose)).decrypt(nonce, body, context.encode())
    except InvalidTag:
        raise Unsealable("the secret does not open with this master key") from None
    return plain.decode()


def seal(master_key: bytes, access_key_id: str, secret: str) -> bytes:
    """A credential's secret, bound to its access key id."""
    return seal_text(master_key, "credential-secret", access_key_id, secret)


def unseal(master_key: bytes, access_key_id: str, sealed: bytes) -> str:
    return unseal_text(master_key, "credential-secret", access_key_id, sealed)
