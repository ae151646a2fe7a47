"""The master key that seals credential secrets at rest.

Production passes it in FERRY_SECURITY_MASTER_KEY (base64 of 32 bytes) or mounts a file; the
embedded default generates one into var/master.key, readable by the owner only.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from ferry.config import ConfigError, SecurityConfig
from storage.files import private_dir

KEY_BYTES = 32


def _decode(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise ConfigError(f"{where}: not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{where}: must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def load_master_key(config: SecurityConfig, *, create: bool = True) -> bytes:
    if config.master_key:
        return _decode(config.master_key, "security.master_key")
    path = Path(config.master_key_file)
    if not path.exists() and create:
        private_dir(path.parent)
        # O_EXCL: two processes starting at once must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"security.master_key_file: cannot read {path}: {exc.strerror}") from None
    return _decode(text, f"security.master_key_file ({path})")
