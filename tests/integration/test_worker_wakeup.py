"""A new request starts at once, not at the workers' next poll.

The workers poll every 60 s here, so only the wake-up can explain a request that leaves
`pending` within a second: in one `ferry serve` (an in-process signal, SQLite or PostgreSQL),
and with the API and the workers in two processes on PostgreSQL (LISTEN/NOTIFY).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ferry import FERRY, Ferry, free_port, http

POLL = "60"
STARTS_WITHIN = 1.0  # seconds; the poll interval is 60


def _started_after(ferry: Ferry, key: str, body: dict[str, object]) -> float:
    """Seconds from the API's 202 to the request leaving `pending`."""
    status, created = http("POST", ferry.api_url + "/api/portability/export", body=body, token=key)
    answered = time.monotonic()
    assert status == 202, created
    while time.monotonic() - answered < 10:
        _, shown = http(
            "GET", f"{ferry.api_url}/api/portability/requests/{created['id']}", token=key
        )
        if shown["status"] != "pending":
            return time.monotonic() - answered
        time.sleep(0.01)
    raise AssertionError("the request was still pending after 10 s")


def _user(ferry: Ferry, email: str) -> str:
    key = ferry.create_user(email)["api_key"]
    ferry.run("buckets", "create", email.split("@")[0] + "-data", "--owner", email)
    return key


def _transfer(email: str) -> dict[str, object]:
    # Nothing listens on the target: the worker starts the job and fails it, which is enough
    # to see when it started.
    return {
        "request_type": "transfer",
        "destination": {
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "bucket": "target",
            "access_key_id": "AKID",
            "secret_access_key": "secret",
        },
        "source": {"bucket": email.split("@")[0] + "-data", "prefix": ""},
    }


@pytest.fixture
def ferry(database_url: str, tmp_path: Path) -> Iterator[Ferry]:
    ferry = Ferry.create(
        tmp_path / "ferry",
        database_url,
        workers_poll_seconds=POLL,
        exports_max_active_per_user="10",
        egress_allowed_cidrs="127.0.0.0/8",
    )
    try:
        yield ferry
    finally:
        ferry.stop()


def test_a_request_wakes_the_workers_of_its_process(ferry: Ferry) -> None:
    key = _user(ferry, "wake@example.com")
    ferry.serve()
    time.sleep(0.5)  # the workers' first pass is over: from here on they wait for 60 s
    exports = [_started_after(ferry, key, {"format": "json"}) for _ in range(3)]
    transfers = [_started_after(ferry, key, _transfer("wake@example.com")) for _ in range(3)]
    print(f"in-process wake: export {exports}, transfer {transfers}")
    assert max(exports) < STARTS_WITHIN, exports
    assert max(transfers) < STARTS_WITHIN, transfers


@pytest.mark.postgres
def test_a_worker_in_another_process_is_woken_by_notify(ferry: Ferry, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite one process works at a time")
    key = _user(ferry, "notify@example.com")
    ferry.serve("--no-worker")
    with (ferry.workdir / "worker.log").open("wb") as log:
        worker = subprocess.Popen([FERRY, "worker"], env=ferry.env, stdout=log, stderr=log)
    ferry.processes.append(worker)
    deadline = time.monotonic() + 30
    while b"workers started" not in (ferry.workdir / "worker.log").read_bytes():
        assert time.monotonic() < deadline and worker.poll() is None, "ferry worker did not start"
        time.sleep(0.1)
    time.sleep(0.5)
    started = [_started_after(ferry, key, _transfer("notify@example.com")) for _ in range(3)]
    started += [_started_after(ferry, key, {"format": "json"}) for _ in range(3)]
    print(f"NOTIFY wake: median {statistics.median(started):.3f} s of {started}")
    assert max(started) < STARTS_WITHIN, started
