"""A handler is a module-level function: mounted on an app of its own, it serves as in Ferry.

Each test builds a Starlette app with one or two of the API's operations and an `ApiState`
of its own (a fixed clock, a real database), as a test of a new endpoint would.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from portability.contract.operations import Operation
from portability.credentials import GatewayAddress
from portability.credentials_api import OPERATIONS, issue_credential, list_credentials
from portability.exports.settings import ExportSettings
from portability.state import ApiState
from storage.local import LocalStorage
from tests.support.accounts import user_with_bucket

NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
ENDPOINT = GatewayAddress("http://127.0.0.1:9000", "us-east-1")


class Mounted:
    def __init__(self, client: TestClient, key: str, bucket: str) -> None:
        self.client, self.key, self.bucket = client, key, bucket

    def post(self, path: str, body: object) -> tuple[int, dict[str, object]]:
        answer = self.client.post(path, json=body, headers={"Authorization": f"Bearer {self.key}"})
        return answer.status_code, answer.json()


def operation(handler: object) -> Operation:
    return next(op for op in OPERATIONS if op.handler is handler)


@pytest.fixture(scope="module")
def mounted(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    root: Path = tmp_path_factory.mktemp("handlers")
    storage = LocalStorage(root / "storage")
    tag = secrets.token_hex(4)

    key = asyncio.run(user_with_bucket(database_url, storage, f"m-{tag}"))
    engine = create_engine(database_url)
    app = Starlette(routes=[operation(h).route() for h in (issue_credential, list_credentials)])
    app.state.api = ApiState(
        engine=engine,
        sessions=session_factory(engine),
        storage=storage,
        master_key=bytes(32),
        endpoint=ENDPOINT,
        export_settings=ExportSettings(gateway_url=ENDPOINT.url, region=ENDPOINT.region),
        clock=lambda: NOON,
        max_ttl_seconds=30 * 86_400,
    )
    with TestClient(app) as client:
        yield Mounted(client, key, f"m-{tag}")
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def test_a_handler_serves_from_the_state_it_is_given(mounted: Mounted) -> None:
    status, issued = mounted.post(
        "/api/portability/credentials",
        {"bucket": mounted.bucket, "session_token": False, "ttl_seconds": 20 * 86_400},
    )
    assert status == 201, issued
    # The state's clock and its max_ttl_seconds (above the default 7 days) were the ones used.
    assert issued["created_at"] == "2026-12-04T12:00:00Z"
    assert issued["expires_at"] == "2026-12-24T12:00:00Z"
    assert issued["endpoint_url"] == ENDPOINT.url
    listed = mounted.client.get(
        "/api/portability/credentials", headers={"Authorization": f"Bearer {mounted.key}"}
    ).json()
    assert [c["access_key_id"] for c in listed["credentials"]] == [issued["access_key_id"]]


def test_a_refused_body_is_the_apis_error_json(mounted: Mounted) -> None:
    status, answer = mounted.post(
        "/api/portability/credentials", {"bucket": mounted.bucket, "ttl_seconds": "long"}
    )
    assert status == 422
    assert answer == {"error": {"code": "invalid", "message": "ttl_seconds must be an integer"}}
    status, answer = mounted.post(
        "/api/portability/credentials", {"bucket": mounted.bucket, "prefixes": []}
    )
    assert (status, answer["error"]["code"]) == (400, "bad_request")
