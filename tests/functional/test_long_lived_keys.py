"""Migration keys that outlive a week: token-free keys up to [sts] max_ttl_seconds."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from portability.api import build_api_app
from portability.credentials import GatewayAddress
from storage.local import LocalStorage
from tests.support.accounts import user_with_bucket

DAY = 86_400


@pytest.fixture
def issue(database_url: str, tmp_path: Path) -> Iterator[Any]:
    storage = LocalStorage(tmp_path / "storage")
    tag = secrets.token_hex(4)

    key = asyncio.run(user_with_bucket(database_url, storage, f"long-{tag}"))
    engine = create_engine(database_url)
    clients = []

    def issue(max_ttl: int, body: dict[str, Any]) -> Any:
        app = build_api_app(
            engine=engine,
            sessions=session_factory(engine),
            storage=storage,
            master_key=bytes(32),
            endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
            max_ttl_seconds=max_ttl,
        )
        client = TestClient(app)
        clients.append(client)
        return client.post(
            "/api/portability/credentials",
            json={"bucket": f"long-{tag}", **body},
            headers={"Authorization": f"Bearer {key}"},
        )

    yield issue
    for client in clients:
        client.close()
    asyncio.run(engine.dispose())


def test_a_week_is_the_default_limit(issue: Any) -> None:
    answer = issue(7 * DAY, {"ttl_seconds": 30 * DAY, "session_token": False})
    assert answer.status_code == 422
    assert "between 900 and 604800" in answer.json()["error"]["message"]


def test_token_free_keys_live_as_long_as_the_admin_allows(issue: Any) -> None:
    answer = issue(365 * DAY, {"ttl_seconds": 90 * DAY, "session_token": False})
    assert answer.status_code == 201, answer.text
    assert answer.json()["session_token"] is None
    with_token = issue(365 * DAY, {"ttl_seconds": 90 * DAY})
    assert with_token.status_code == 422
    assert "token-free key may live longer" in with_token.json()["error"]["message"]
    too_long = issue(30 * DAY, {"ttl_seconds": 90 * DAY, "session_token": False})
    assert too_long.status_code == 422
