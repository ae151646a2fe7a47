"""Build the configured backend from the `[storage]` settings."""

from __future__ import annotations

from pathlib import Path

from storage.base import Storage
from storage.exceptions import ConfigError

BACKENDS = ("local", "s3")


def open_storage(
    backend: str,
    *,
    root: str | Path = "var/storage",
    endpoint_url: str = "",
    region: str = "us-east-1",
    access_key_id: str = "",
    secret_access_key: str = "",
    session_token: str | None = None,
    addressing_style: str = "path",
    timeout_seconds: float = 60.0,
) -> Storage:
    """The backend named by `backend`; raises ConfigError for a setting that cannot work.

    Nothing is contacted here: an unreachable endpoint shows up on first use or in `ping()`.
    """
    if backend == "local":
        if not str(root).strip():
            raise ConfigError("storage root must name a directory for the local backend")
        from storage.local import LocalStorage

        return LocalStorage(Path(root))
    if backend == "s3":
        if not endpoint_url.strip():
            raise ConfigError("storage endpoint_url is required for the s3 backend")
        if not access_key_id or not secret_access_key:
            raise ConfigError(
                "storage access_key_id and secret_access_key are required for the s3 backend"
            )
        from storage.s3 import S3Storage

        # S3Storage validates the URL and addressing style and raises ConfigError itself.
        return S3Storage(
            endpoint_url,
            region,
            access_key_id,
            secret_access_key,
            session_token=session_token,
            addressing_style=addressing_style,
            read_timeout=timeout_seconds,
        )
    raise ConfigError(f"unknown storage backend {backend!r}; expected one of {', '.join(BACKENDS)}")
