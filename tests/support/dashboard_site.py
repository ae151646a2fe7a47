"""The dashboard's routes in a bare Starlette app on a real database, with a clock the tests
move: the site the dashboard page tests sign in to.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from db.engine import create_engine, session_factory
from portability.accounts import create_user
from portability.buckets import create_bucket
from portability.credentials import GatewayAddress
from portability.dashboard import dashboard_routes
from storage.local import LocalStorage

MASTER_KEY = bytes(range(32))
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Site:
    client: TestClient
    clock: Clock
    keys: dict[str, str]
    database_url: str


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed_site(database_url: str, root: Path, tag: str) -> dict[str, str]:
    engine = create_engine(database_url)
    storage = LocalStorage(root)
    keys = {}
    try:
        async with session_factory(engine).begin() as session:
            for name, admin in (("user", False), ("admin", True), ("other", False)):
                _, keys[name] = await create_user(
                    session, f"{name}-{tag}@example.com", is_admin=admin
                )
            bucket = await create_bucket(
                session, storage, f"pages-{tag}", owner_email=f"user-{tag}@example.com"
            )
            for key in ("docs/a.txt", "docs/b.txt", "photos/c.jpg"):
                await storage.put(bucket.backend_bucket, key, one_chunk(b"hello"), size=5)
    finally:
        await engine.dispose()
        await storage.close()
    return keys


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def login(site: Site, who: str = "user") -> str:
    """Sign in; returns the session's CSRF token (from the overview page)."""
    form = site.client.get("/login")
    answer = site.client.post(
        "/login", data={"csrf_token": csrf_of(form.text), "api_key": site.keys[who], "next": "/"}
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(site.client.get("/").text)


def assert_clean(html: str) -> None:
    assert "Traceback" not in html and 'File "' not in html


@contextmanager
def open_site(
    database_url: str,
    tmp_path: Path,
    *,
    wrap: Callable[[ASGIApp], ASGIApp] | None = None,
    **options: Any,
) -> Iterator[Site]:
    """Three users (user, admin, other) and a bucket of three files; the user's bucket name
    is under ``keys["bucket"]``. `options` go to dashboard_routes (egress, door, ...);
    `wrap` puts middleware of the test's own in front of the app."""
    tag = uuid.uuid4().hex[:8]
    keys = asyncio.run(seed_site(database_url, tmp_path / "storage", tag))
    keys["bucket"] = f"pages-{tag}"
    clock = Clock()
    engine = create_engine(database_url)
    app = Starlette(
        routes=dashboard_routes(
            session_factory(engine),
            LocalStorage(tmp_path / "storage"),
            MASTER_KEY,
            GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
            session_max_age=3600,
            clock=clock,
            **options,
        )
    )
    with TestClient(wrap(app) if wrap else app, follow_redirects=False) as client:
        yield Site(client, clock, keys, database_url)
        client.portal.call(engine.dispose)  # type: ignore[union-attr]
