"""Signed webhooks from a real `ferry serve` to a receiver that verifies every signature.

The receiver checks each delivery with the Standard Webhooks reference library
(`standardwebhooks`) and counts events by `webhook-id`. Retries come fast here
([webhooks] backoff_base_seconds = 1).
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.ferry import Ferry, http


class Receiver:
    """An HTTP endpoint: answers 503 to the first `fail_first` deliveries, then 204."""

    def __init__(self) -> None:
        self.secret = ""
        self.fail_first = 0
        self.seen = 0
        self.events: dict[str, dict[str, Any]] = {}  # webhook-id -> payload
        self.deliveries: list[str] = []
        self.bad: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.seen += 1
                    failing = receiver.seen <= receiver.fail_first
                    if not failing:
                        try:
                            payload = Webhook(receiver.secret).verify(body, dict(self.headers))
                        except Exception as exc:
                            receiver.bad.append(repr(exc))
                        else:
                            receiver.events[self.headers["webhook-id"]] = payload
                            receiver.deliveries.append(self.headers["webhook-id"])
                self.send_response(503 if failing else 204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ferry"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def types(self) -> list[str]:
        with self.lock:
            return sorted(e["type"] for e in self.events.values())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


@pytest.fixture
def ferry(database_url: str, tmp_path: Path) -> Iterator[Ferry]:
    ferry = Ferry.create(
        tmp_path / "ferry",
        database_url,
        egress_allowed_cidrs="127.0.0.0/8",
        webhooks_backoff_base_seconds="1",
        workers_poll_seconds="1",
    )
    try:
        yield ferry
    finally:
        ferry.stop()


def _setup(ferry: Ferry, receiver: Receiver) -> tuple[str, dict[str, Any], str]:
    # One database per module: each test has a user and bucket of its own.
    tag = uuid.uuid4().hex[:8]
    email = f"hooked-{tag}@example.com"
    key = ferry.create_user(email)["api_key"]
    bucket = f"hooked-{tag}"
    ferry.run("buckets", "create", bucket, "--owner", email)
    status, hook = http(
        "POST", ferry.api_url + "/api/webhooks", body={"url": receiver.url}, token=key
    )
    assert status == 201, hook
    assert hook["secret"].startswith("whsec_")
    receiver.secret = hook["secret"]
    status, listed = http("GET", ferry.api_url + "/api/webhooks", token=key)
    assert "secret" not in json.dumps(listed)  # shown once
    return key, hook, bucket


def _wait_for(predicate: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_each_state_change_arrives_signed_once_though_the_receiver_fails_first(
    ferry: Ferry, receiver: Receiver
) -> None:
    receiver.fail_first = 3
    ferry.serve()
    key, hook, bucket = _setup(ferry, receiver)
    api = ferry.api_url
    status, cred = http(
        "POST", api + "/api/portability/credentials", body={"bucket": bucket}, token=key
    )
    assert status == 201
    status, _ = http(
        "DELETE", f"{api}/api/portability/credentials/{cred['access_key_id']}", token=key
    )
    assert status == 204
    status, export = http(
        "POST", api + "/api/portability/export", body={"format": "json"}, token=key
    )
    assert status == 202
    _wait_for(lambda: http("GET", f"{api}/api/portability/requests/{export['id']}", token=key)[1]
              ["status"] == "ready")  # fmt: skip
    status, _ = http("POST", f"{api}/api/portability/requests/{export['id']}/cancel", token=key)
    assert status == 202

    wanted = ["credential.revoked", "request.cancelled", "request.ready"]
    _wait_for(lambda: receiver.types() == wanted)
    assert not receiver.bad
    assert receiver.seen >= 3 + 3  # three refused first, then each of the three events
    payloads = list(receiver.events.values())
    revoked = next(p for p in payloads if p["type"] == "credential.revoked")
    assert revoked["data"]["access_key_id"] == cred["access_key_id"]
    ready = next(p for p in payloads if p["type"] == "request.ready")
    assert ready["data"]["id"] == export["id"]
    assert "X-Amz-Signature" not in json.dumps(payloads)  # no working link in an event

    def deliveries() -> list[dict[str, Any]]:
        status, log = http("GET", f"{api}/api/webhooks/{hook['id']}/deliveries", token=key)
        assert status == 200
        found: list[dict[str, Any]] = log["deliveries"]
        return found

    # The receiver has the last event a moment before the sender records its answer.
    _wait_for(lambda: all(d["delivered_at"] for d in deliveries()), seconds=10)
    log = deliveries()
    assert {d["event"] for d in log} == set(wanted)
    assert all(d["delivered_at"] and d["last_status"] == 204 for d in log)
    assert max(d["attempts"] for d in log) >= 2  # retried after the 503s

    # "Send again": the same event, the same webhook-id.
    first = log[-1]
    status, _ = http(
        "POST",
        f"{api}/api/webhooks/{hook['id']}/deliveries/{first['id']}/resend",
        token=key,
    )
    assert status == 202
    _wait_for(lambda: receiver.deliveries.count(first["event_id"]) >= 2)
    assert len(receiver.events) == 3


def test_a_kill_9_after_the_state_change_loses_no_event(ferry: Ferry, receiver: Receiver) -> None:
    serving = ferry.serve()
    key, _, bucket = _setup(ferry, receiver)
    status, cred = http(
        "POST",
        ferry.api_url + "/api/portability/credentials",
        body={"bucket": bucket},
        token=key,
    )
    assert status == 201
    status, _ = http(
        "DELETE",
        f"{ferry.api_url}/api/portability/credentials/{cred['access_key_id']}",
        token=key,
    )
    assert status == 204
    serving.send_signal(signal.SIGKILL)  # at once: the event is at most in the outbox
    serving.wait()
    ferry.serve()
    _wait_for(lambda: receiver.types() == ["credential.revoked"])
    assert not receiver.bad


def test_webhook_urls_go_through_the_egress_policy(database_url: str, tmp_path: Path) -> None:
    ferry = Ferry.create(tmp_path / "strict", database_url)  # the default policy
    try:
        ferry.serve()
        key = ferry.create_user("strict@example.com")["api_key"]
        for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://[::1]/"):
            status, answer = http(
                "POST", ferry.api_url + "/api/webhooks", body={"url": url}, token=key
            )
            assert status == 400, answer
            assert "is not allowed" in answer["error"]["message"]
    finally:
        ferry.stop()
