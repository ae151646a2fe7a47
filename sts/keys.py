"""Credential formats: FRY + 17 of [A-Z0-9] key ids, 40-character secrets, opaque tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

KEY_ID_PREFIX = "FRY"
KEY_ID_LENGTH = 20
SECRET_LENGTH = 40
_KEY_ID_ALPHABET = string.ascii_uppercase + string.digits
_KEY_ID = re.compile(f"{KEY_ID_PREFIX}[A-Z0-9]{{{KEY_ID_LENGTH - len(KEY_ID_PREFIX)}}}")
# The secret alphabet of AWS secrets: letters, digits, '+' and '/'; every tool copes with them.
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def new_access_key_id() -> str:
    body = "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(KEY_ID_LENGTH - 3))
    return KEY_ID_PREFIX + body


def looks_like_access_key_id(value: str) -> bool:
    return _KEY_ID.fullmatch(value) is not None


def new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def new_session_token() -> str:
    return "FRYT" + secrets.token_urlsafe(48)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
