"""The process's shared resources: database engine, storage backend, master key.

Opened once by the CLI around serving (or by a test around its apps) and closed in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from db.wakeup import WorkSignal
from ferry.config import Config, ConfigError, OidcConfig
from ferry.masterkey import load_master_key
from gateway.app import GatewayApp, GatewaySettings
from gateway.audit import AuditWriter
from portability.exports.sources import PersonalDataSources, SourceSpec, build_sources
from portability.guard import DoorPolicy, FailureLimiter
from portability.oidc.provider import OidcClient
from portability.oidc.settings import OidcSettings
from storage.base import Storage
from storage.egress import EgressPolicy
from storage.factory import open_storage
from sts.scope import parse_cidrs
from sts.store import CredentialStore


@dataclass(frozen=True)
class Runtime:
    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    master_key: bytes
    # The gateway's credential checks have connections of their own: behind a burst of API
    # calls (50 revokes at once) in the shared pool, every gateway request waited a second.
    credential_sessions: async_sessionmaker[AsyncSession]
    # Wakes this process's workers when a request is created here (and, on PostgreSQL,
    # when another process NOTIFYs).
    work_signal: WorkSignal

    @property
    def egress(self) -> EgressPolicy:
        """Where the process may connect on a user's behalf ([egress] allowed_cidrs)."""
        return EgressPolicy.from_cidrs(self.config.egress.allowed_cidrs)


def build_storage(config: Config) -> Storage:
    s = config.storage
    return open_storage(
        s.backend,
        root=s.root,
        endpoint_url=s.endpoint_url,
        region=s.region,
        access_key_id=s.access_key_id,
        secret_access_key=str(s.secret_access_key),
        addressing_style=s.addressing_style,
        timeout_seconds=s.timeout_seconds,
    )


def build_gateway_app(runtime: Runtime, *, shared_dir: str = "") -> GatewayApp:
    g = runtime.config.gateway
    return GatewayApp(
        storage=runtime.storage,
        credentials=CredentialStore(runtime.credential_sessions, runtime.master_key),
        audit=AuditWriter(runtime.sessions),
        settings=GatewaySettings(
            domain=g.domain,
            region=g.region,
            regions=g.regions,
            trusted_proxies=parse_cidrs(g.trusted_proxies),
            shared_dir=shared_dir,
            sigv2=g.sigv2,
        ),
        sts=(runtime.sessions, runtime.master_key),
    )


@asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    master_key = load_master_key(config.security)
    engine = create_engine(config.database.url)
    credential_engine = create_engine(config.database.url)  # connects only when used
    signal = WorkSignal()
    try:
        storage = build_storage(config)
        try:
            yield Runtime(
                config,
                engine,
                session_factory(engine, signal=signal),
                storage,
                master_key,
                session_factory(credential_engine),
                signal,
            )
        finally:
            await storage.close()
    finally:
        await credential_engine.dispose()
        await engine.dispose()


def door_policy(config: Config) -> DoorPolicy:
    """The API listener's proxies, cookie security and failed-key limit, from [api], and the
    OpenID Connect provider, from [oidc]."""
    a = config.api
    return DoorPolicy(
        public_url_is_https=a.public_url.lower().startswith("https://"),
        trusted_proxies=parse_cidrs(a.trusted_proxies),
        limiter=FailureLimiter(failures=a.key_failures_per_minute, window=60.0),
        oidc=oidc_client(config.oidc),
    )


def oidc_client(config: OidcConfig) -> OidcClient | None:
    """The provider's client, or None while [oidc] issuer is empty."""
    if not config.enabled:
        return None
    secret = str(config.client_secret)
    if config.client_secret_file:
        try:
            secret = Path(config.client_secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"oidc.client_secret_file: cannot read {config.client_secret_file}: {exc.strerror}"
            ) from None
    return OidcClient(
        OidcSettings(
            issuer=config.issuer,
            client_id=config.client_id,
            client_secret=secret,
            name=config.name,
            scopes=config.scopes,
            email_claim=config.email_claim,
            admin_claim=config.admin_claim,
            admin_values=config.admin_values,
            auto_create_users=config.auto_create_users,
            allow_api_key_signin=config.allow_api_key_signin,
            api_audience=config.api_audience,
            clock_skew_seconds=config.clock_skew_seconds,
        )
    )


def personal_data_sources(
    config: Config, sessions: async_sessionmaker[AsyncSession]
) -> PersonalDataSources:
    """Each personal-data section's source, from [personal_data.<section>]."""
    specs = [
        SourceSpec(
            section,
            kind=source.kind,
            url=str(source.url),
            query=source.query,
            columns=dict(source.columns),
        )
        for section, source in config.personal_data
    ]
    try:
        return build_sources(sessions, specs)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
