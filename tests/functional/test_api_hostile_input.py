"""Hostile input at the REST API: every field, arbitrary values, never a 5xx.

The reproductions of issue 15 first (each was a 500 or a silent widening), then hypothesis
throwing arbitrary JSON, strings and numbers at every field of every body the API reads, at
its query parameters and at its path parameters, on a real database.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from portability.accounts import create_user
from portability.api import build_api_app
from portability.buckets import create_bucket
from portability.credentials import GatewayAddress
from portability.guard import DoorPolicy, FailureLimiter
from storage.egress import EgressPolicy
from storage.local import LocalStorage
from tests.support.egress import FixedResolver

EXAMPLES = 150


class Api:
    def __init__(self, client: TestClient, key: str, admin_key: str, bucket: str) -> None:
        self.client, self.key, self.admin_key, self.bucket = client, key, admin_key, bucket

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        admin: bool = False,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.admin_key if admin else self.key}"}
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        return self.client.request(method, path, content=content, headers=headers)


@pytest.fixture(scope="module")
def api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root: Path = tmp_path_factory.mktemp("hostile")
    storage = LocalStorage(root / "storage")
    tag = secrets.token_hex(4)
    bucket = f"hostile-{tag}"

    async def setup() -> tuple[str, str]:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine).begin() as session:
                _, key = await create_user(session, f"h-{tag}@example.com")
                _, admin_key = await create_user(session, f"ha-{tag}@example.com", is_admin=True)
                await create_bucket(session, storage, bucket, owner_email=f"h-{tag}@example.com")
        finally:
            await engine.dispose()
        return key, admin_key

    key, admin_key = asyncio.run(setup())
    engine = create_engine(database_url)
    app = build_api_app(
        engine=engine,
        sessions=session_factory(engine),
        storage=storage,
        master_key=bytes(32),
        endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
        # Names resolve to one public address: hypothesis' endpoints are checked, never reached
        # (a transfer is only stored; no worker runs here).
        egress=EgressPolicy(resolver=FixedResolver()),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, key, admin_key, bucket)
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


# -- the reproductions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["bucket", "label", "prefixes", "allowed_cidrs"], ids=lambda f: f"surrogate-in-{f}"
)
def test_a_lone_surrogate_is_a_400(api: Api, field: str) -> None:
    body: dict[str, Any] = {"bucket": api.bucket}
    body[field] = ["\ud800"] if field in ("prefixes", "allowed_cidrs") else "a\ud800"
    raw = json.dumps(body).encode()  # ensure_ascii: the surrogate travels as "\ud800"
    answer = api.call("POST", "/api/portability/credentials", raw=raw)
    assert answer.status_code == 400, answer.text
    assert "lone surrogate" in answer.json()["error"]["message"]


def test_a_surrogate_in_a_transfer_prefix_is_a_400(api: Api) -> None:
    body = {
        "request_type": "transfer",
        "destination": {
            "endpoint_url": "https://s3.example.net",
            "bucket": "target",
            "access_key_id": "AKID",
            "secret_access_key": "secret",
            "prefix": "\udfff",
        },
        "source": {"bucket": api.bucket, "prefix": "x\ud800"},
    }
    answer = api.call("POST", "/api/portability/export", body)
    assert answer.status_code == 400, answer.text


def test_a_rate_the_database_cannot_hold_is_refused(api: Api) -> None:
    for rate in (2**63, 2**64, 10**30):
        body = {"bucket": api.bucket, "max_bytes_per_second": rate}
        answer = api.call("POST", "/api/portability/credentials", body)
        assert answer.status_code == 422, answer.text
        assert "max_bytes_per_second must be between" in answer.json()["error"]["message"]


def test_empty_prefixes_are_a_400_not_the_whole_bucket(api: Api) -> None:
    answer = api.call(
        "POST", "/api/portability/credentials", {"bucket": api.bucket, "prefixes": []}
    )
    assert answer.status_code == 400
    assert '[""]' in answer.json()["error"]["message"]
    whole = api.call(
        "POST", "/api/portability/credentials", {"bucket": api.bucket, "prefixes": [""]}
    )
    assert whole.status_code == 201 and whole.json()["prefixes"] == [""]


def test_a_body_over_one_mib_is_a_413(api: Api) -> None:
    big = json.dumps({"bucket": api.bucket, "label": "x" * (1024 * 1024)}).encode()
    answer = api.call("POST", "/api/portability/credentials", raw=big)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams
        yield b'{"label": "'
        for _ in range(2048):
            yield b"y" * 1024
        yield b'"}'

    streamed = api.client.post(
        "/api/portability/credentials",
        content=chunks(),
        headers={"Authorization": f"Bearer {api.key}"},
    )
    assert streamed.status_code == 413


# -- hypothesis over every field --------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TEXT = st.text(max_size=60)
NUMBERS = st.integers(min_value=-(2**80), max_value=2**80) | st.floats(allow_nan=False)
ANY_FIELD = TEXT | NUMBERS | JSON

CREDENTIAL_FIELDS = (
    "bucket",
    "prefixes",
    "ttl_seconds",
    "session_token",
    "allowed_cidrs",
    "max_bytes_per_second",
    "label",
)
DESTINATION_FIELDS = (
    "endpoint_url",
    "region",
    "bucket",
    "prefix",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "addressing_style",
    "checksum",
)
EXPORT_FIELDS = ("request_type", "format", "archive_format", "include")
IMPORT_FIELDS = ("request_type", "source_prefix", "target", "manifest_url", "on_conflict")
HANDOFF_FIELDS = (
    "format",
    "version",
    "endpoint_url",
    "region",
    "bucket",
    "prefixes",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "expires_at",
    "manifest_url",
)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _assert_no_5xx(answer: Any, what: Any) -> None:
    assert answer.status_code < 500, (what, answer.status_code, answer.text)
    if answer.status_code >= 400:
        assert "error" in answer.json(), answer.text


@FUZZ
@given(st.dictionaries(st.sampled_from(CREDENTIAL_FIELDS), ANY_FIELD, max_size=4))
def test_credential_fields(api: Api, fields: dict[str, Any]) -> None:
    body = {"bucket": api.bucket, **fields}
    _assert_no_5xx(api.call("POST", "/api/portability/credentials", body), body)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(DESTINATION_FIELDS), ANY_FIELD, max_size=4),
    st.dictionaries(st.sampled_from(("bucket", "prefix")), ANY_FIELD, max_size=2),
)
def test_transfer_fields(api: Api, destination: dict[str, Any], source: dict[str, Any]) -> None:
    body = {
        "request_type": "transfer",
        "destination": {
            "endpoint_url": "https://s3.example.net",
            "bucket": "target",
            "access_key_id": "AKID",
            "secret_access_key": "secret",
            **destination,
        },
        "source": {"bucket": api.bucket, **source},
    }
    _assert_no_5xx(api.call("POST", "/api/portability/export", body), body)


@FUZZ
@given(
    st.dictionaries(st.sampled_from(DESTINATION_FIELDS[:-1]), ANY_FIELD, max_size=4),
    st.dictionaries(st.sampled_from(HANDOFF_FIELDS), ANY_FIELD, max_size=4),
    st.dictionaries(st.sampled_from(IMPORT_FIELDS), ANY_FIELD, max_size=3),
    st.booleans(),
)
def test_import_fields(
    api: Api,
    source: dict[str, Any],
    handoff: dict[str, Any],
    fields: dict[str, Any],
    as_handoff: bool,
) -> None:
    body: dict[str, Any] = {"target": {"bucket": api.bucket}, **fields}
    if as_handoff:
        body["handoff"] = {
            "format": "ferry-handoff",
            "version": 1,
            "endpoint_url": "https://s3.example.net",
            "region": "us-east-1",
            "bucket": "photos",
            "prefixes": [""],
            "access_key_id": "AKID",
            "secret_access_key": "secret",
            "session_token": None,
            "expires_at": "2030-01-01T00:00:00Z",
            "manifest_url": None,
            **handoff,
        }
    else:
        body["source"] = {
            "endpoint_url": "https://s3.example.net",
            "bucket": "photos",
            "access_key_id": "AKID",
            "secret_access_key": "secret",
            **source,
        }
    _assert_no_5xx(api.call("POST", "/api/portability/import", body), body)


@FUZZ
@given(st.dictionaries(st.sampled_from(EXPORT_FIELDS), ANY_FIELD, max_size=3), JSON)
def test_export_fields_and_whole_bodies(api: Api, fields: dict[str, Any], whole: Any) -> None:
    body = {"request_type": "export", "format": "json", **fields}
    answer = api.call("POST", "/api/portability/export", body)
    _assert_no_5xx(answer, body)
    if answer.status_code == 202:  # one active export per user: make room for the next
        api.call("POST", f"/api/portability/requests/{answer.json()['id']}/cancel")
    for path in (
        "/api/portability/credentials",
        "/api/portability/export",
        "/api/portability/import",
    ):
        _assert_no_5xx(api.call("POST", path, whole), whole)


@FUZZ
@given(TEXT, TEXT)
def test_path_and_query_parameters(api: Api, value: str, other: str) -> None:
    part = quote(value, safe="")
    calls = [
        ("GET", f"/api/portability/requests/{part}", False),
        ("POST", f"/api/portability/requests/{part}/cancel", False),
        ("DELETE", f"/api/portability/credentials/{part}", False),
        ("GET", f"/api/portability/credentials?active={quote(other, safe='')}", False),
        ("GET", f"/api/admin/credentials?active={part}&user={quote(other, safe='')}", True),
        ("POST", f"/api/admin/credentials/{part}/revoke", True),
        ("POST", f"/api/admin/users/{part}/revoke-credentials", True),
    ]
    for method, path, admin in calls:
        _assert_no_5xx(api.call(method, path, admin=admin), path)


def test_wrong_api_keys_are_limited_per_address_and_prefix(
    database_url: str, tmp_path: Path
) -> None:
    clock = [0.0]
    door = DoorPolicy(limiter=FailureLimiter(failures=3, window=30, clock=lambda: clock[0]))
    engine = create_engine(database_url)
    app = build_api_app(
        engine=engine,
        sessions=session_factory(engine),
        storage=LocalStorage(tmp_path / "storage"),
        master_key=bytes(32),
        endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
        door=door,
    )
    with TestClient(app) as client:

        def get(key: str) -> Any:
            return client.get(
                "/api/portability/credentials", headers={"Authorization": f"Bearer {key}"}
            )

        for i in range(3):
            assert get(f"fk_guess{i}").status_code == 401
        limited = get("fk_guess3")
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "too_many_requests"
        assert limited.headers["retry-after"] == "10"  # one more try every 30/3 seconds
        # No key at all does not count, but is blocked like the rest from this address.
        assert client.get("/api/portability/credentials").status_code == 429
        clock[0] += 10
        assert get("fk_guess4").status_code == 401
        assert get("fk_guess5").status_code == 429
        client.portal.call(engine.dispose)  # type: ignore[union-attr]
