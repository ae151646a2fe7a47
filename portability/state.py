"""What the API's handlers depend on, kept on `app.state.api` by `build_api_app`.

A handler reads it with `api_state(request)`; a test builds a small Starlette app with its
own `ApiState` and mounts the one route it exercises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from portability.credentials import GatewayAddress
from portability.exports.settings import ExportSettings
from portability.guard import DoorPolicy
from storage.base import Storage
from storage.egress import EgressPolicy
from sts.issue import TTL_MAX


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ApiState:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    master_key: bytes = field(repr=False)
    endpoint: GatewayAddress
    export_settings: ExportSettings
    # Without a policy, user-supplied endpoints may only be public addresses.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    door: DoorPolicy = field(default_factory=DoorPolicy)
    clock: Callable[[], datetime] = utcnow
    max_ttl_seconds: int = TTL_MAX


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state
