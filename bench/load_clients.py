"""The load benchmark's clients: the request mix, the seeded objects, and the client loops.

The loops run in worker processes (`bench/load.py --worker`, started by bench/load_drive.py),
so the generator never shares the gateway's event loop. A worker reads its plan on stdin, waits
for the common start time, and writes one JSON line per request (a `Sample`) to stdout.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

KiB = 1024
MiB = 1024 * KiB
SMALL_COUNT, SMALL_SIZE = 200, 4 * KiB
BIG_COUNT, BIG_SIZE = 4, MiB
RANGE_SIZE = 64 * KiB
PREFIX = "load/"
# Operation mix, by weight: what a pull client does, mostly small reads.
MIX = (("list", 5), ("head", 20), ("get4k", 60), ("range", 15))
_CODE = re.compile(rb"<Code>([^<]*)</Code>")
# Open loop: requests of one client in flight at once. Far above what a served schedule needs
# (one every clients / rate seconds, each answered in milliseconds), it bounds the connections
# a stalled server would otherwise collect; a stall still shows, as latency from the schedule.
MAX_IN_FLIGHT = 8
# Open loop: a request sent this much after it was due counts as a late send (the generator,
# or the in-flight bound, fell behind the schedule).
LATE_S = 0.010


def small_key(i: int) -> str:
    return f"{PREFIX}small/{i:04d}.bin"


def big_key(i: int) -> str:
    return f"{PREFIX}big/{i}.bin"


def content(key: str, size: int) -> bytes:
    """The seeded bytes of a key: the generator recomputes them to check every body."""
    return random.Random(key).randbytes(size)


@dataclass
class Sample:
    client: int
    op: str
    status: int  # 0: no answer (connection error or timeout), or never sent (code "NotSent")
    code: str  # S3 error code, "" on success
    scheduled: float  # when it was due: latency counts from here (closed loop: = started)
    started: float  # time.monotonic(): system-wide on Linux, comparable across processes
    ended: float
    wrong: bool = False
    held: bool = False  # open loop: waited for a free slot (MAX_IN_FLIGHT) before it was sent


@dataclass
class _Request:
    op: str
    method: str
    url: str
    headers: dict[str, str]
    key: str = ""
    expect: bytes = b""


def _pick(rng: random.Random, base: str, bigs: dict[str, bytes]) -> _Request:
    """The next request of the mix, drawn from the client's own seeded RNG."""
    op = rng.choices([name for name, _ in MIX], [weight for _, weight in MIX])[0]
    if op == "list":
        return _Request(op, "GET", base + "?list-type=2&max-keys=100&prefix=load%2Fsmall%2F", {})
    if op == "range":
        key = big_key(rng.randrange(BIG_COUNT))
        first = rng.randrange(BIG_SIZE - RANGE_SIZE)
        headers = {"Range": f"bytes={first}-{first + RANGE_SIZE - 1}"}
        return _Request(op, "GET", base + key, headers, key, bigs[key][first : first + RANGE_SIZE])
    key = small_key(rng.randrange(SMALL_COUNT))
    return _Request(op, "HEAD" if op == "head" else "GET", base + key, {}, key)


async def _send(
    index: int,
    want: _Request,
    signer: Any,
    session: Any,
    md5s: dict[str, str],
    scheduled: float | None = None,
    held: bool = False,
) -> Sample:
    """Sign, send and check one request; latency counts from `scheduled` (default: now)."""
    from botocore.awsrequest import AWSRequest
    from yarl import URL

    request = AWSRequest(want.method, want.url, headers=dict(want.headers))
    signer.add_auth(request)
    started = time.monotonic()
    status, code, wrong = 0, "", False
    try:
        async with session.request(
            want.method, URL(want.url, encoded=True), headers=dict(request.headers.items())
        ) as response:
            body = await response.read()
            status = response.status
            etag = response.headers.get("ETag", "").strip('"')
            if status >= 300:
                found = _CODE.search(body)
                code = found.group(1).decode() if found else str(status)
            elif want.op == "get4k":
                digest = hashlib.md5(body).hexdigest()  # noqa: S324 - the S3 ETag
                wrong = digest != etag or digest != md5s[want.key]
            elif want.op == "range":
                wrong = body != want.expect or etag != md5s[want.key]
            elif want.op == "head":
                wrong = etag != md5s[want.key]
    except Exception as exc:  # timeouts, resets, aiohttp.ClientError: a failed request
        code = type(exc).__name__
    due = started if scheduled is None else scheduled
    return Sample(index, want.op, status, code, due, started, time.monotonic(), wrong, held)


async def _closed_client(
    index: int,
    signer: Any,
    plan: dict[str, Any],
    session: Any,
    bigs: dict[str, bytes],
    samples: list[Sample],
) -> None:
    """One request at a time, the next as soon as the last is answered."""
    rng = random.Random(index)
    base = f"{plan['endpoint']}/{plan['bucket']}/"
    await asyncio.sleep(max(plan["start_at"] - time.monotonic(), 0))
    while time.monotonic() < plan["stop_at"]:
        want = _pick(rng, base, bigs)
        samples.append(await _send(index, want, signer, session, plan["md5s"]))


async def _open_client(
    index: int,
    signer: Any,
    plan: dict[str, Any],
    session: Any,
    bigs: dict[str, bytes],
    samples: list[Sample],
) -> None:
    """Requests sent on a fixed schedule, whether or not the last ones were answered.

    Client i is due at start + i / rate + k * clients / rate: together the clients offer
    `rate` requests a second, evenly spaced. Up to MAX_IN_FLIGHT of a client's requests run at
    once; a request due while all are busy waits for one ("held") and goes out late, its
    latency still counted from when it was due.
    """
    rng = random.Random(index)
    base = f"{plan['endpoint']}/{plan['bucket']}/"
    rate, stop = plan["rate"], plan["stop_at"]
    # Nothing goes out that could not be answered (or time out) before the worker's hard
    # deadline, request_timeout + 5 s after the stop: later ones count as not sent.
    last_send = stop + 2.0
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    pending: set[asyncio.Task[None]] = set()

    async def one(want: _Request, due: float, held: bool) -> None:
        try:
            samples.append(await _send(index, want, signer, session, plan["md5s"], due, held))
        finally:
            slots.release()

    try:
        for k in itertools.count():
            due = plan["start_at"] + index / rate + k * plan["clients"] / rate
            if due >= stop:
                break
            want = _pick(rng, base, bigs)
            await asyncio.sleep(max(due - time.monotonic(), 0))
            held = slots.locked()
            await slots.acquire()
            if time.monotonic() > last_send:
                slots.release()
                now = time.monotonic()
                samples.append(Sample(index, want.op, 0, "NotSent", due, now, now, held=held))
                continue
            task = asyncio.create_task(one(want, due, held))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()


async def _worker_main(plan: dict[str, Any]) -> list[Sample]:
    import aiohttp
    from botocore.auth import S3SigV4Auth
    from botocore.credentials import Credentials

    bigs = {big_key(i): content(big_key(i), BIG_SIZE) for i in range(BIG_COUNT)}
    # One signer per credential, made before the clock starts: signing stays cheap.
    signers = [
        (
            i,
            S3SigV4Auth(
                Credentials(c["access_key_id"], c["secret_access_key"], c.get("session_token")),
                "s3",
                "us-east-1",
            ),
        )
        for i, c in plan["credentials"]
    ]
    samples: list[Sample] = []
    client = _closed_client if plan["rate"] is None else _open_client
    # No pool limit: an open-loop client may have several requests in flight, each on its own
    # connection, and a pool queue would delay their sending out of the generator's sight.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=plan["request_timeout"])
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Ready: the controller answers with the common start time once every worker is.
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        plan.update(json.loads(sys.stdin.readline()))
        tasks = [
            asyncio.ensure_future(client(i, signer, plan, session, bigs, samples))
            for i, signer in signers
        ]
        # The hard deadline: whatever still runs then is cancelled.
        budget = plan["stop_at"] + plan["request_timeout"] + 5 - time.monotonic()
        _, late = await asyncio.wait(tasks, timeout=max(budget, 1))
        for task in late:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return samples


def worker() -> None:
    plan = json.loads(sys.stdin.readline())
    samples = asyncio.run(_worker_main(plan))
    out = sys.stdout
    for s in samples:
        out.write(json.dumps(asdict(s), separators=(",", ":")) + "\n")
    out.flush()
