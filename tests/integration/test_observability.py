"""Logs and metrics of a real `ferry serve`: JSON lines carrying the request id each answer
carries, and /metrics counting exactly the requests made, with gauges read from the database."""

from __future__ import annotations

import io
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient

from ferry.logs import JsonFormatter
from portability.api import _server_error
from portability.metrics import RequestIdMiddleware, metrics_endpoint
from tests.support.ferry import Ferry, served_demo

TOKEN = "metrics-token-for-tests"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    with served_demo(
        tmp_path_factory.mktemp("observed"),
        database_url,
        log_format="json",
        api_metrics_token=TOKEN,
    ) as ferry:
        yield ferry


def call(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def scrape(ferry: Ferry) -> Samples:
    status, headers, body = call(
        "GET", ferry.api_url + "/metrics", headers={"authorization": f"Bearer {TOKEN}"}
    )
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def eventually(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    """Access lines and counters are written after the answer is sent: wait for them."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.05)


def issue(ferry: Ferry, key: str, prefix: str) -> tuple[dict[str, Any], str]:
    status, headers, body = call(
        "POST",
        ferry.api_url + "/api/portability/credentials",
        body={"bucket": "alice-data", "prefixes": [prefix], "ttl_seconds": 3600},
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert status == 201, body
    return json.loads(body), headers["x-request-id"]


def s3(ferry: Ferry, credential: dict[str, Any]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=ferry.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=credential["access_key_id"],
        aws_secret_access_key=credential["secret_access_key"],
        aws_session_token=credential["session_token"],
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_log_lines_carry_the_request_id_and_metrics_count_each_request(served: Ferry) -> None:
    before = scrape(served)
    credential, api_request_id = issue(served, served.demo_key("alice@example.com"), "docs/")
    client = s3(served, credential)

    got = client.get_object(Bucket="alice-data", Key="docs/notes-0001.txt")
    body = got["Body"].read()
    ok_id = got["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    with pytest.raises(ClientError) as denied:
        client.get_object(Bucket="alice-data", Key="photos/2020/IMG_0000.jpg")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    denied_id = denied.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]

    def line(request_id: str, logger: str) -> dict[str, Any] | None:
        for record in served.log_records():
            if record.get("request_id") == request_id and record["logger"] == logger:
                return record
        return None

    ok = eventually(lambda: line(ok_id, "ferry.gateway.access"), f"the access line of {ok_id}")
    assert ok["level"] == "info"
    assert ok["action"] == "GetObject" and ok["method"] == "GET" and ok["status"] == 200
    assert ok["path"] == "/alice-data/docs/notes-0001.txt"
    assert ok["bytes"] == len(body) > 0
    assert ok["access_key_id"] == credential["access_key_id"]
    assert ok["error"] is None and isinstance(ok["duration_ms"], int)

    no = eventually(lambda: line(denied_id, "ferry.gateway.access"), "the denied access line")
    assert (no["status"], no["error"], no["bytes"]) == (403, "AccessDenied", 0)

    api = eventually(lambda: line(api_request_id, "ferry.api.access"), "the API access line")
    assert api["method"] == "POST" and api["status"] == 201
    assert api["path"] == api["route"] == "/api/portability/credentials"
    assert isinstance(api["duration_ms"], int)
    assert len({ok_id, denied_id, api_request_id}) == 3

    def moved() -> Samples | None:
        after = scrape(served)
        for status in ("200", "403"):
            labels = {"action": "GetObject", "status": status}
            name = "ferry_gateway_requests_total"
            if value(after, name, **labels) == value(before, name, **labels):
                return None
        return after

    after = eventually(moved, "the gateway's counters move")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ferry_gateway_requests_total", action="GetObject", status="200") == 1
    assert delta("ferry_gateway_requests_total", action="GetObject", status="403") == 1
    assert delta("ferry_gateway_errors_total", code="AccessDenied") == 1
    assert delta("ferry_gateway_response_bytes_total", action="GetObject") == len(body)
    assert delta("ferry_gateway_request_duration_seconds_count", action="GetObject") == 2
    assert (
        delta(
            "ferry_api_requests_total",
            method="POST",
            route="/api/portability/credentials",
            status="201",
        )
        == 1
    )
    assert delta("ferry_api_request_duration_seconds_count", route="/api/portability/credentials")
    # The scrape before counted itself once it had answered.
    assert delta("ferry_api_requests_total", method="GET", route="/metrics", status="200") == 1


def test_gauges_count_credentials_and_requests_from_the_database(served: Ferry) -> None:
    key = served.demo_key("alice@example.com")
    before = scrape(served)
    issue(served, key, "docs/")
    revoked, _ = issue(served, key, "photos/")
    status, _, body = call(
        "DELETE",
        f"{served.api_url}/api/portability/credentials/{revoked['access_key_id']}",
        headers={"authorization": f"Bearer {key}"},
    )
    assert status == 204, body
    after = scrape(served)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "ferry_metrics_database_up") == 1
    assert delta("ferry_credentials", kind="user", state="active") == 1
    assert delta("ferry_credentials", kind="user", state="revoked") == 1
    assert delta("ferry_credentials", kind="user", state="expired") == 0

    # Counted by type whatever state the embedded worker has taken it to by the scrape.
    status, _, body = call(
        "POST",
        served.api_url + "/api/portability/export",
        body={"request_type": "export", "format": "json"},
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert status == 202, body
    exports = scrape(served)

    def export_requests(samples: Samples) -> float:
        return sum(
            v
            for (name, labels), v in samples.items()
            if name == "ferry_portability_requests" and ("type", "export") in labels
        )

    assert export_requests(exports) - export_requests(after) == 1
    for what in ("transfers", "exports"):
        for gauge in ("bytes_done", "bytes_planned", "objects_done", "objects_planned"):
            assert (f"ferry_running_{what}_{gauge}", frozenset()) in exports


def test_metrics_need_the_token_and_stay_off_the_gateway(served: Ferry) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        status, answer, body = call("GET", served.api_url + "/metrics", headers=headers)
        assert status == 401, headers
        assert json.loads(body)["error"]["code"] == "unauthorized"
        assert answer["www-authenticate"].startswith("Bearer")
    status, _, body = call("GET", served.gateway_url + "/metrics")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert b"ferry_" not in body


def test_a_well_formed_incoming_request_id_is_kept_and_others_replaced(served: Ferry) -> None:
    url = served.api_url + "/api/health"
    status, headers, _ = call("GET", url, headers={"x-request-id": "lb-7f3a.91c2:0001"})
    assert status == 200 and headers["x-request-id"] == "lb-7f3a.91c2:0001"
    for bad in ("short", "x" * 65, "has space-123", 'quote"123456'):
        status, headers, _ = call("GET", url, headers={"x-request-id": bad})
        assert status == 200
        assert headers["x-request-id"] != bad
        assert len(headers["x-request-id"]) == 16 and headers["x-request-id"].isalnum()
    unknown = call("GET", served.api_url + "/no/such/page")
    assert unknown[0] == 404 and len(unknown[1]["x-request-id"]) == 16


def test_without_a_token_metrics_answer_loopback_clients_only(tmp_path: Path) -> None:
    # In process: the other tests' clients are all on loopback. No database here, so the
    # scrape also shows the database gauges' failure mode.
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/ferry.db")
    endpoint = metrics_endpoint(async_sessionmaker(engine), clock=lambda: datetime.now(UTC))
    app = Starlette(routes=[Route("/metrics", endpoint)])
    with TestClient(app, client=("203.0.113.7", 40000)) as remote:
        refused = remote.get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden"
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        scraped = local.get("/metrics")
        assert scraped.status_code == 200
        assert "ferry_metrics_database_up 0.0" in scraped.text
        assert "ferry_credentials" not in scraped.text


def test_an_unhandled_error_is_logged_and_answered_with_the_request_id() -> None:
    # In process: a served Ferry has no route that fails on purpose. Same middleware and
    # error handler as the API's.
    async def boom(request: Any) -> Any:
        raise RuntimeError("kaput")

    app = Starlette(
        routes=[Route("/boom", boom)],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={Exception: _server_error},
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            answer = client.get("/boom")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal", "message": "internal server error"}}
    request_id = answer.headers["x-request-id"]
    lines = {line["logger"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["ferry.api"]["request_id"] == request_id
    assert lines["ferry.api"]["exc"].endswith("RuntimeError: kaput")
    assert "kaput" not in answer.text
    access = lines["ferry.api.access"]
    assert (access["request_id"], access["status"], access["route"]) == (request_id, 500, "/boom")
