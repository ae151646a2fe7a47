"""Configuration: a TOML file, overridden by FERRY_<SECTION>_<KEY> environment variables.

Read once at the edge (the CLI) and passed down as frozen dataclasses. Every key is documented
in config.example.toml; `ferry serve` with no file at all runs on the embedded default
(SQLite and the local storage backend under ./var/).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(Exception):
    """A configuration problem, with a one-line message fit for the user."""


class Secret(str):
    """A string that does not print itself (in logs, reprs, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///var/ferry.db"


@dataclass(frozen=True)
class StorageConfig:
    backend: str = "local"
    root: str = "var/storage"
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: Secret = Secret("")
    addressing_style: str = "path"
    # s3 only: the longest wait for the backend's next byte (an answer's first one included)
    # before the request fails; the gateway then answers 503, which clients retry.
    timeout_seconds: int = 20

    def __post_init__(self) -> None:
        if self.timeout_seconds <= 0:
            raise ConfigError("storage.timeout_seconds: must be positive")
        if self.backend not in ("local", "s3"):
            raise ConfigError(f"storage.backend: unknown backend {self.backend!r} (local or s3)")
        if self.addressing_style not in ("path", "virtual"):
            raise ConfigError("storage.addressing_style: must be 'path' or 'virtual'")
        if self.backend == "s3":
            _check_http_url("storage.endpoint_url", self.endpoint_url)


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:9000"
    public_url: str = "http://127.0.0.1:9000"
    domain: str = ""
    region: str = "us-east-1"  # what snippets and GetBucketLocation name
    tls_cert_file: str = ""
    tls_key_file: str = ""
    trusted_proxies: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()  # regions a client may sign for; empty: any
    sigv2: bool = True  # accept Signature Version 2 (boto3's default presigned URLs)

    def __post_init__(self) -> None:
        parse_listen("gateway.listen", self.listen)
        _check_http_url("gateway.public_url", self.public_url)
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("gateway: set both tls_cert_file and tls_key_file, or neither")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ConfigError(f"gateway.trusted_proxies: {exc}") from None


@dataclass(frozen=True)
class ApiConfig:
    listen: str = "127.0.0.1:8000"
    public_url: str = "http://127.0.0.1:8000"
    metrics_token: Secret = Secret("")  # set: GET /metrics needs it as a bearer token

    def __post_init__(self) -> None:
        parse_listen("api.listen", self.listen)
        _check_http_url("api.public_url", self.public_url)


@dataclass(frozen=True)
class SecurityConfig:
    master_key_file: str = "var/master.key"
    master_key: Secret = Secret("")  # FERRY_SECURITY_MASTER_KEY: base64 of 32 bytes


@dataclass(frozen=True)
class MailConfig:
    smtp_url: Secret = Secret("")
    from_: str = "ferry@localhost"
    outbox: str = "var/outbox"
    ca_file: str = ""


@dataclass(frozen=True)
class ExportsConfig:
    """Export building and delivery; validated by portability's ExportSettings."""

    exports_bucket: str = "ferry-exports"
    part_size: int = 2 * 1024**3
    upload_chunk_size: int = 8 * 1024**2
    link_ttl_seconds: int = 604_800
    compression_level: int = 1
    max_active_per_user: int = 1
    s3_manifest_sha256: bool = True


@dataclass(frozen=True)
class LogConfig:
    format: str = "auto"  # "json", "text", or "auto": text on a terminal, JSON lines elsewhere
    level: str = "info"

    def __post_init__(self) -> None:
        if self.format not in ("auto", "json", "text"):
            raise ConfigError(f"log.format: expected auto, json or text, got {self.format!r}")
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(
                f"log.level: expected debug, info, warning or error, got {self.level!r}"
            )


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    exports: ExportsConfig = field(default_factory=ExportsConfig)
    log: LogConfig = field(default_factory=LogConfig)


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseConfig,
    "storage": StorageConfig,
    "gateway": GatewayConfig,
    "api": ApiConfig,
    "security": SecurityConfig,
    "mail": MailConfig,
    "exports": ExportsConfig,
    "log": LogConfig,
}


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load `path` (optional) and apply FERRY_<SECTION>_<KEY> overrides from `env`."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = set(raw) - set(_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")

    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, values, env)
    return Config(**sections)


def _build_section(
    name: str, cls: type[Any], values: dict[str, Any], env: Mapping[str, str]
) -> Any:
    fields = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"[{name}]: unknown key(s): {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for key, f in fields.items():
        env_name = f"FERRY_{name.upper()}_{key.upper()}"
        if env_name in env:
            value: Any = env[env_name]
            if str(f.type).startswith("tuple"):
                value = [v.strip() for v in value.split(",") if v.strip()]
        elif key in values:
            value = values[key]
        else:
            continue
        kwargs[f.name] = _coerce(f"{name}.{key}", str(f.type), value)
    return cls(**kwargs)


def _coerce(where: str, type_name: str, value: Any) -> Any:
    if type_name == "bool":
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if type_name == "int":
        if isinstance(value, str):
            try:
                value = int(value.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer")
        return value
    if type_name.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return Secret(value) if type_name == "Secret" else value


def parse_listen(where: str, listen: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:port")."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)


def _check_http_url(where: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{where}: malformed URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: expected an http(s):// URL, got {url!r}")
