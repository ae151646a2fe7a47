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

from storage.egress import parse_cidrs
from storage.s3_wire import ADDRESSING_STYLES


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
        if self.addressing_style not in ADDRESSING_STYLES:
            raise ConfigError(
                f"storage.addressing_style: must be one of {', '.join(ADDRESSING_STYLES)}"
            )
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
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For/-Proto are believed
    # Refused API keys (bearer or sign-in) each client address and each key prefix may send
    # per minute before it is answered 429 for a while.
    key_failures_per_minute: int = 10

    def __post_init__(self) -> None:
        parse_listen("api.listen", self.listen)
        _check_http_url("api.public_url", self.public_url)
        if self.key_failures_per_minute <= 0:
            raise ConfigError("api.key_failures_per_minute: must be positive")
        try:
            parse_cidrs(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"api.trusted_proxies: {exc}") from None


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
class ServerConfig:
    # `ferry serve` processes sharing the listening sockets: one Python process uses one core,
    # so set this to the machine's cores in production (--processes overrides it).
    processes: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.processes <= 256:
            raise ConfigError("server.processes: must be between 1 and 256")


@dataclass(frozen=True)
class WorkersConfig:
    # How often idle export and transfer workers look for work. A request made in the same
    # process, or anywhere on PostgreSQL (LISTEN/NOTIFY), wakes them at once; this is the
    # fallback for a notification that was lost.
    poll_seconds: int = 2
    # A transfer or import worker that dies keeps its objects until its lease runs out; a
    # live one renews its leases every lease_seconds / 6.
    lease_seconds: int = 30
    # Bytes per second each transfer or import may move per worker; 0: no limit.
    bandwidth_limit: int = 0

    def __post_init__(self) -> None:
        if self.poll_seconds <= 0:
            raise ConfigError("workers.poll_seconds: must be positive")
        if self.lease_seconds < 3:
            raise ConfigError("workers.lease_seconds: must be at least 3")
        if self.bandwidth_limit < 0:
            raise ConfigError("workers.bandwidth_limit: must be 0 (no limit) or more")


@dataclass(frozen=True)
class StsConfig:
    # The longest life of a token-free migration key users may issue: 7 days by default, up
    # to 365 days. Credentials with a session token stay within 7 days.
    max_ttl_seconds: int = 604_800

    def __post_init__(self) -> None:
        if not 604_800 <= self.max_ttl_seconds <= 365 * 86_400:
            raise ConfigError("sts.max_ttl_seconds: must be between 604800 and 31536000")


@dataclass(frozen=True)
class WebhooksConfig:
    # Seconds before a failed delivery's second attempt; each further wait doubles (with
    # jitter) up to an hour, for 24 hours from the event.
    backoff_base_seconds: int = 5

    def __post_init__(self) -> None:
        if self.backoff_base_seconds <= 0:
            raise ConfigError("webhooks.backoff_base_seconds: must be positive")


@dataclass(frozen=True)
class EgressConfig:
    """Where Ferry may connect on a user's behalf (storage.egress): public addresses, plus
    these networks. Tests list loopback here for their local S3 servers."""

    allowed_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            parse_cidrs(self.allowed_cidrs)
        except ValueError as exc:
            raise ConfigError(f"egress.allowed_cidrs: {exc}") from None


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
class OidcConfig:
    """Dashboard sign-in and API bearer tokens from the provider's OpenID Connect provider.

    Off while `issuer` is empty. The issuer is the operator's, not a user's: it is not subject
    to the egress policy.
    """

    issuer: str = ""
    name: str = ""  # the button's "Sign in with <name>"; empty: the issuer's host name
    client_id: str = ""
    client_secret: Secret = Secret("")
    client_secret_file: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    email_claim: str = "email"
    admin_claim: str = ""
    admin_values: tuple[str, ...] = ()
    auto_create_users: bool = False
    allow_api_key_signin: bool = True
    api_audience: str = ""
    clock_skew_seconds: int = 60

    def __post_init__(self) -> None:
        if not 0 <= self.clock_skew_seconds <= 300:
            raise ConfigError("oidc.clock_skew_seconds: must be between 0 and 300")
        if not self.issuer:
            return
        _check_http_url("oidc.issuer", self.issuer)
        if not self.client_id:
            raise ConfigError("oidc.client_id: required when oidc.issuer is set")
        if self.client_secret and self.client_secret_file:
            raise ConfigError("oidc: set client_secret or client_secret_file, not both")
        if "openid" not in self.scopes:
            raise ConfigError("oidc.scopes: must include 'openid'")
        if not self.email_claim:
            raise ConfigError("oidc.email_claim: must name a claim")
        if bool(self.admin_claim) != bool(self.admin_values):
            raise ConfigError("oidc: set both admin_claim and admin_values, or neither")
        if self.api_audience and self.api_audience == self.client_id:
            # An ID token's audience is the client id: it would pass as an access token.
            raise ConfigError("oidc.api_audience: must differ from oidc.client_id")

    @property
    def enabled(self) -> bool:
        return bool(self.issuer)


PERSONAL_DATA_SECTIONS = ("profile", "api_keys", "usage", "billing", "audit_logs")


@dataclass(frozen=True)
class PersonalDataSourceConfig:
    """Where one section of the personal-data document comes from.

    `source` is "ferry" (Ferry's own tables), "sql" (`query` run read-only on `url`, which
    the empty default implies when `url` is set) or the name of a `ferry.personal_data`
    entry point. `columns` maps the schema's field names to the query's column names where
    they differ.
    """

    source: str = ""
    url: Secret = Secret("")
    query: str = ""
    columns: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "sql" and not (self.url and self.query):
            raise ConfigError("personal_data: a sql source needs both url and query")

    @property
    def kind(self) -> str:
        return self.source or ("sql" if self.url else "ferry")


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    exports: ExportsConfig = field(default_factory=ExportsConfig)
    egress: EgressConfig = field(default_factory=EgressConfig)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    sts: StsConfig = field(default_factory=StsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    oidc: OidcConfig = field(default_factory=OidcConfig)
    # Section name -> its source; sections not named read Ferry's own tables.
    personal_data: tuple[tuple[str, PersonalDataSourceConfig], ...] = ()

    def personal_data_source(self, section: str) -> PersonalDataSourceConfig:
        return dict(self.personal_data).get(section, PersonalDataSourceConfig())


_SECTIONS: dict[str, type[Any]] = {
    "database": DatabaseConfig,
    "storage": StorageConfig,
    "gateway": GatewayConfig,
    "api": ApiConfig,
    "security": SecurityConfig,
    "mail": MailConfig,
    "exports": ExportsConfig,
    "egress": EgressConfig,
    "workers": WorkersConfig,
    "server": ServerConfig,
    "webhooks": WebhooksConfig,
    "sts": StsConfig,
    "log": LogConfig,
    "oidc": OidcConfig,
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
    unknown = set(raw) - set(_SECTIONS) - {"personal_data"}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")

    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, values, env)
    sections["personal_data"] = _personal_data(raw.get("personal_data", {}), env)
    return Config(**sections)


def _personal_data(
    raw: Any, env: Mapping[str, str]
) -> tuple[tuple[str, PersonalDataSourceConfig], ...]:
    """[personal_data.<section>] tables, with FERRY_PERSONAL_DATA_<SECTION>_<KEY> overrides."""
    if not isinstance(raw, dict):
        raise ConfigError("[personal_data] must hold tables, e.g. [personal_data.usage]")
    unknown = set(raw) - set(PERSONAL_DATA_SECTIONS)
    if unknown:
        raise ConfigError(
            f"[personal_data]: unknown section(s): {', '.join(sorted(unknown))} "
            f"(known: {', '.join(PERSONAL_DATA_SECTIONS)})"
        )
    sources = []
    for section in PERSONAL_DATA_SECTIONS:
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"[personal_data.{section}] must be a table")
        values = dict(values)
        columns = values.pop("columns", {})
        if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
            raise ConfigError(f"personal_data.{section}.columns: expected a table of strings")
        name, label = f"personal_data_{section}", f"personal_data.{section}"
        built = _build_section(name, _PersonalDataKeys, values, env, label=label)
        if built == _PersonalDataKeys() and not columns:
            continue
        try:
            config = PersonalDataSourceConfig(
                source=built.source,
                url=built.url,
                query=built.query,
                columns=tuple(sorted(columns.items())),
            )
        except ConfigError as exc:
            raise ConfigError(f"personal_data.{section}: {str(exc).partition(': ')[2]}") from None
        sources.append((section, config))
    return tuple(sources)


@dataclass(frozen=True)
class _PersonalDataKeys:
    """The plain keys of one [personal_data.<section>] table (columns is read apart)."""

    source: str = ""
    url: Secret = Secret("")
    query: str = ""


def _build_section(
    name: str,
    cls: type[Any],
    values: dict[str, Any],
    env: Mapping[str, str],
    *,
    label: str = "",
) -> Any:
    """Build `cls` from a table; `name` spells the env variables, `label` the messages."""
    label = label or name
    fields = {f.name.rstrip("_"): f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"[{label}]: unknown key(s): {', '.join(sorted(unknown))}")
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
        kwargs[f.name] = _coerce(f"{label}.{key}", str(f.type), value)
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
