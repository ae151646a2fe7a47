"""200 clients, each with its own credential, load `ferry serve` on SeaweedFS; 50 are revoked.

Runs bench/load.py's generator (the same code `make bench` runs): closed loops for 20 s instead
of 60, then an open loop offering a fixed rate for 15 s. Both check what must hold under load:
no 5xx, every request answered, every GET body equal to its ETag and the seeded bytes, each
revoked credential refused (no request sent a second or more after its revoke was served, none
after its first 403, a HEAD after the run refused, and refused during the run when its revoke
returned with three seconds or more of it left), and no 403 for the other 150. Latency is
printed, not asserted: speed belongs to the benchmark.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import TIME_TO_BE_REFUSED, LoadResult, render, run_load, targets
from tests.fixtures.servers import S3Server

CLIENTS, REVOKED, SECONDS = 200, 50, 20.0
# The open loop: each client due once a second, a rate this machine serves with room to spare.
OPEN_SECONDS, OPEN_RATE = 15.0, 200.0


def test_load_with_revocation_mid_run(
    seaweedfs: S3Server, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_load(
        seaweedfs, database_url, tmp_path, clients=CLIENTS, duration=SECONDS, revoke=REVOKED
    )
    with capsys.disabled():
        print("\n" + render(result))
        for what, met, measured in targets(result):
            print(f"{'met   ' if met else 'MISSED'} {what}: {measured}")
    assert result.requests > CLIENTS  # every client got going
    assert_held_under_load(result)


def test_open_loop_load_with_revocation_mid_run(
    seaweedfs: S3Server, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_load(
        seaweedfs,
        database_url,
        tmp_path,
        clients=CLIENTS,
        duration=OPEN_SECONDS,
        revoke=REVOKED,
        rate=OPEN_RATE,
    )
    with capsys.disabled():
        print("\n" + render(result))
        for what, met, measured in targets(result):
            print(f"{'met   ' if met else 'MISSED'} {what}: {measured}")
    assert result.mode == "open" and result.offered_rate == OPEN_RATE
    # Every request due was sent, the late ones included: the schedule sets the count.
    assert abs(result.requests - OPEN_RATE * OPEN_SECONDS) < CLIENTS
    assert result.not_sent == 0
    assert_held_under_load(result)


def assert_held_under_load(result: LoadResult) -> None:
    assert {s for s in result.by_op} == {"list", "head", "get4k", "range"}
    assert result.server_errors == 0, result.by_code
    assert result.no_answer == 0, result.by_code
    assert result.wrong_bytes == 0
    assert len(result.revocations) == REVOKED
    for r in result.revocations:
        assert r.returned_at, f"revoking {r.access_key_id} failed"
        assert r.refused_at_end, r
        assert r.last_served_sent_after < 1.0, r
        assert r.served_after_refusal == 0, r
    # Each client whose revoke returned with seconds of the run left was refused in the run
    # (a request every second or faster). On PostgreSQL that is every one; on SQLite revokes
    # queue for its single writer while the gateway is saturated, and later ones return after
    # the run (the HEAD after it, above, covers them).
    timely = [r for r in result.revocations if r.time_left >= TIME_TO_BE_REFUSED]
    assert timely, "no revoke returned with time left in the run to see it refused"
    for r in timely:
        assert r.refused_after is not None, r
    assert result.refused_not_revoked == 0
    assert result.not_revoked_refused_at_end == 0
    # Only the revoked credentials were refused, and only with the revocation's code.
    assert set(result.by_code) <= {"InvalidAccessKeyId", "403"}, result.by_code
