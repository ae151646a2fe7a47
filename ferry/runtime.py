"""The process's shared resources: database engine, storage backend, master key.

Opened once by the CLI around serving (or by a test around its apps) and closed in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.engine import create_engine, session_factory
from ferry.config import Config
from ferry.masterkey import load_master_key
from gateway.app import GatewayApp, GatewaySettings
from gateway.audit import AuditWriter
from storage.base import Storage
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


def build_gateway_app(runtime: Runtime) -> GatewayApp:
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
            sigv2=g.sigv2,
        ),
    )


@asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    master_key = load_master_key(config.security)
    engine = create_engine(config.database.url)
    credential_engine = create_engine(config.database.url)  # connects only when used
    try:
        storage = build_storage(config)
        try:
            yield Runtime(
                config,
                engine,
                session_factory(engine),
                storage,
                master_key,
                session_factory(credential_engine),
            )
        finally:
            await storage.close()
    finally:
        await credential_engine.dispose()
        await engine.dispose()
