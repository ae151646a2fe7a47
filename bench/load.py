"""Load on the gateway: many concurrent clients, each with its own credential, for a fixed time.

    .venv/bin/python bench/load.py [--clients 200] [--duration 60] [--revoke 50] [--rate R]
                                   [--processes N] [--database-url URL] [--json PATH]

Starts SeaweedFS and `ferry serve` (one process, as users run it, or `--processes N`; on the
s3 backend) on loopback, seeds 200 objects of 4 KiB and 4 of 1 MiB under `load/`, and issues
one read-only credential per client, scoped to `load/`, through the REST API. The clients
run in two worker processes (so the generator never shares the gateway's event loop), each
client a loop of ListObjectsV2, HeadObject, 4 KiB GETs and 64 KiB ranged GETs of the 1 MiB
objects, signed with botocore's S3SigV4Auth (one signer per credential). Every GET body is
checked against the ETag and the bytes the seed made; a mismatch is "wrong bytes".

At half time the owner revokes `--revoke` of the credentials through the API; for each, the
run records the time from the revoke call returning to that client's first 403 and whether
any request it started later was served. The other clients must see no 403.

Prints requests/s, counts by status and error code, p50/p95/p99 latency (all, and 4 KiB GETs
alone), revocation latencies, the gateway's peak RSS and open file descriptors, and the CPU
used by the gateway, SeaweedFS and the generator. Loopback only; a hard deadline stops it.

Two modes. By default the clients are closed loops with no pause between requests: with N
clients, latency is about N / throughput (Little's law), so the percentiles measure the
gateway at saturation, and a server that stalls gets fewer requests rather than slow ones
("coordinated omission").

`--rate R` makes it an open loop, as wrk2 does: the clients together offer R requests a second
on a fixed schedule, client i due at start + i / R + k * N / R, so arrivals are evenly spaced
(a constant rate, not Poisson: kinder to the server than random arrivals, but the same every
run). A request goes out when it is due even if the client's previous ones are unanswered (up
to MAX_IN_FLIGHT at once per client, each on its own connection; past that it waits, "held"),
and its latency counts from when it was due, so a stall shows as latency. Sends more than
LATE_S behind their schedule are counted ("late sends", with the worst lateness): a generator
that cannot keep up is visible, not hidden in the figures. The achieved rate is the answered
requests over the time taken to answer them. Mix, checks, revocation and the CPU, RSS and fd
figures are the same in both modes.

The code: bench/load_clients.py (the mix and the client loops, in the worker processes),
bench/load_drive.py (starting the workers, watching the servers), bench/load_runs.py (the two
targets, set up and driven), bench/load_results.py (what a run measured), bench/load_table.py
(the Markdown table and the targets); this file is the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and bench/copy.py would then
# stand in for the standard library's copy module: put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import contextlib
import json
import shutil
import signal
import tempfile
from dataclasses import asdict
from typing import Any

from bench.load_clients import worker
from bench.load_results import TIME_TO_BE_REFUSED, LoadResult
from bench.load_runs import run_direct, run_load
from bench.load_table import render, targets

# Importable from here too: tests/integration/test_load.py runs the benchmark's own code
# under the name `make bench` runs it by.
__all__ = ["TIME_TO_BE_REFUSED", "LoadResult", "render", "run_direct", "run_load", "targets"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--revoke", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: offer this many requests/s in all, latency from each one's due time "
        "(default: closed loops, no pause)",
    )
    parser.add_argument(
        "--processes", type=int, default=1, help="ferry serve --processes (default 1)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the SeaweedFS-direct run")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument(
        "--postgres",
        metavar="SERVER_URL",
        help="run on a scratch database made (and dropped) on this PostgreSQL server",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker()
        return

    def give_up(signum: int, frame: Any) -> None:
        raise TimeoutError("bench/load.py: hard deadline reached")

    # Set-up (SeaweedFS, seeding, issuing) plus both runs plus generous slack, then stop.
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(int(options.duration) * 2 + 300)

    from tests.fixtures.database import fresh_postgres_database
    from tests.fixtures.servers import start_seaweedfs

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-load-"))
    server, process = start_seaweedfs(work / "seaweedfs", "seaweedfs")
    peer = None
    scratch = contextlib.ExitStack()
    if options.postgres:
        options.database_url = scratch.enter_context(fresh_postgres_database(options.postgres))
    try:
        pid = process.process.pid
        if not options.no_peer:
            peer = run_direct(
                server,
                clients=options.clients,
                duration=options.duration,
                seaweedfs_pid=pid,
                rate=options.rate,
            )
        result = run_load(
            server,
            options.database_url or f"sqlite+aiosqlite:///{work / 'ferry.db'}",
            work,
            clients=options.clients,
            duration=options.duration,
            revoke=options.revoke,
            seaweedfs_pid=pid,
            rate=options.rate,
            processes=options.processes,
        )
    finally:
        process.stop()
        shutil.rmtree(work, ignore_errors=True)
        signal.alarm(0)
        scratch.close()
    print()
    print(render(result, peer))
    print()
    for what, met, measured in targets(result):
        print(f"{'met   ' if met else 'MISSED'} {what}: {measured}")
    if options.json:
        data = {
            "mode": result.mode,
            "offered_rate": result.offered_rate,
            "processes": options.processes,
            "ferry": asdict(result),
            "direct": asdict(peer) if peer else None,
            "markdown": render(result, peer),
            "targets": [
                {"target": what, "met": met, "measured": measured}
                for what, met, measured in targets(result)
            ],
        }
        options.json.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
