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
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and bench/copy.py would then
# stand in for the standard library's copy module: put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KiB = 1024
MiB = 1024 * KiB
SMALL_COUNT, SMALL_SIZE = 200, 4 * KiB
BIG_COUNT, BIG_SIZE = 4, MiB
RANGE_SIZE = 64 * KiB
PREFIX = "load/"
WORKERS = 2
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
# Seconds of the run a revoke must return before its end for its client to be refused in it.
TIME_TO_BE_REFUSED = 3.0


def small_key(i: int) -> str:
    return f"{PREFIX}small/{i:04d}.bin"


def big_key(i: int) -> str:
    return f"{PREFIX}big/{i}.bin"


def content(key: str, size: int) -> bytes:
    """The seeded bytes of a key: the generator recomputes them to check every body."""
    return random.Random(key).randbytes(size)


# The client side: runs in worker processes (`--worker`), reads its plan on stdin.


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


# The controlling side: environment, revocation, gateway sampling, results.


@dataclass
class ProcessPeaks:
    """Peaks of a process's resident memory and open descriptors, sampled from /proc."""

    pid: int
    rss_mib: float = 0.0  # the largest of any one process's peak
    fds: int = 0  # the largest of any one process's count
    cpu_seconds: float = 0.0

    def processes(self) -> list[int]:
        """The process and its children (a supervisor's serving processes)."""
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return [self.pid]
        return [self.pid, *map(int, children)]

    def sample(self) -> None:
        for pid in self.processes():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.rss_mib = max(self.rss_mib, int(line.split()[1]) / 1024)
                self.fds = max(self.fds, len(os.listdir(f"/proc/{pid}/fd")))
            except OSError:
                pass  # the process has ended; keep the peaks seen

    def cpu(self) -> float:
        """utime + stime, in seconds, of the process, its children and its reaped children."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for index, pid in enumerate(self.processes()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # a child that ended between the listing and now
            # cutime and cstime (reaped children) of the parent only: a live child's own
            # figures are counted above, a dead one's are in its parent's.
            total += sum(int(f) for f in fields[11 : 15 if index == 0 else 13])
        return total / ticks


@dataclass
class Revocation:
    access_key_id: str
    client: int
    called_at: float = 0.0
    returned_at: float = 0.0
    # Seconds from the revoke call returning to the first 403 received. This includes that
    # request's own latency, which under saturation can exceed a second by itself.
    refused_after: float | None = None
    # The latest a request was sent, after the revoke returned, and still served (0: none).
    # Under 1 s means every request sent a second or more after the revoke was refused.
    last_served_sent_after: float = 0.0
    served_after_refusal: int = 0  # requests sent after the first 403 was received, served
    refused_at_end: bool = False  # a HEAD after the run was refused
    # Seconds of the run left when the revoke call returned: its client could be refused in
    # the run only with some left (on SQLite, revokes under load queue for the one writer).
    time_left: float = 0.0


@dataclass
class LoadResult:
    target: str  # "ferry" or "seaweedfs" (the peer, straight)
    clients: int
    duration: float
    revoked: int
    requests: int
    requests_per_second: float
    by_status: dict[str, int]
    by_code: dict[str, int]
    by_op: dict[str, int]
    server_errors: int  # 5xx answers
    no_answer: int  # connection errors and timeouts
    wrong_bytes: int
    latency_ms: dict[str, dict[str, float]]  # op (and "all") -> p50/p95/p99/max
    revocations: list[Revocation]
    max_revocation_s: float  # the largest refused_after
    max_served_after_revoke_s: float  # the largest last_served_sent_after
    refused_not_revoked: int  # 403s seen by clients whose credential was not revoked
    not_revoked_refused_at_end: int  # of the others, refused a HEAD after the run
    peak_rss_mib: float  # of the target's server process (the largest, of several)
    peak_fds: int
    gateway_cpu_cores: float
    seaweedfs_cpu_cores: float
    generator_cpu_cores: float
    cores: int
    database: str
    mode: str = "closed"  # "closed": loops, no pause; "open": requests sent on a schedule
    offered_rate: float | None = None  # open loop: requests/s offered, all clients together
    late_sends: int = 0  # open loop: sent more than LATE_S after they were due
    late_ms: dict[str, float] = field(default_factory=dict)  # how late sends were: p50..max
    held_sends: int = 0  # open loop: waited for one of the client's MAX_IN_FLIGHT slots
    not_sent: int = 0  # open loop: could not be sent before the deadline (also "no answer")
    processes: int = 1  # `ferry serve --processes`

    @property
    def revocations_ok(self) -> bool:
        return all(
            r.refused_at_end and r.last_served_sent_after < 1.0 and not r.served_after_refusal
            for r in self.revocations
        )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def _seed(server: Any, bucket: str) -> dict[str, str]:
    s3 = server.client()
    keys = [(small_key(i), SMALL_SIZE) for i in range(SMALL_COUNT)]
    keys += [(big_key(i), BIG_SIZE) for i in range(BIG_COUNT)]

    def put(item: tuple[str, int]) -> tuple[str, str]:
        key, size = item
        body = content(key, size)
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        assert etag == hashlib.md5(body).hexdigest(), (key, etag)  # noqa: S324
        return key, etag

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(put, keys))


def _issue(ferry: Any, api_key: str, bucket: str, count: int) -> list[dict[str, str]]:
    from tests.support.ferry import http

    def one(_: int) -> dict[str, str]:
        status, answer = http(
            "POST",
            ferry.api_url + "/api/portability/credentials",
            body={"bucket": bucket, "prefixes": [PREFIX], "ttl_seconds": 7200},
            token=api_key,
        )
        assert status == 201, answer
        return {k: answer[k] for k in ("access_key_id", "secret_access_key", "session_token")}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _revoke(ferry: Any, api_key: str, revocations: list[Revocation]) -> None:
    from tests.support.ferry import http

    def one(r: Revocation) -> None:
        r.called_at = time.monotonic()
        try:
            status, answer = http(
                "DELETE",
                f"{ferry.api_url}/api/portability/credentials/{r.access_key_id}",
                token=api_key,
            )
        except OSError as exc:  # a timeout under load: reported, not a crashed thread
            status, answer = 0, repr(exc)
        if status == 204:  # else returned_at stays 0: counted as never refused
            r.returned_at = time.monotonic()
        else:
            print(f"revoke {r.access_key_id} failed: {status} {answer}", file=sys.stderr)

    with concurrent.futures.ThreadPoolExecutor(len(revocations) or 1) as pool:
        list(pool.map(one, revocations))


@dataclass
class _Drive:
    samples: list[Sample]
    server_cpu: dict[str, float]  # cores used during the run, by process name
    peaks: dict[str, ProcessPeaks]
    generator_cpu_cores: float
    start_at: float
    rate: float | None  # offered requests/s (open loop); None: closed loops


def _drive(
    endpoint: str,
    bucket: str,
    creds: list[dict[str, str]],
    md5s: dict[str, str],
    duration: float,
    watched: dict[str, int],
    at_half_time: threading.Thread | None = None,
    rate: float | None = None,
) -> _Drive:
    """Run the clients in worker processes for `duration`, sampling the `watched` processes.

    `rate` None: closed loops. Else an open loop offering `rate` requests a second in all.
    """
    if rate is not None and rate <= 0:
        raise ValueError("--rate must be positive")
    request_timeout = 30.0
    workers: list[subprocess.Popen[bytes]] = []
    outputs: list[bytes] = [b""] * WORKERS
    usages: list[float] = [0.0] * WORKERS
    try:
        for w in range(WORKERS):
            plan = {
                "endpoint": endpoint,
                "bucket": bucket,
                "credentials": [(i, creds[i]) for i in range(w, len(creds), WORKERS)],
                "md5s": md5s,
                "request_timeout": request_timeout,
                "clients": len(creds),
                "rate": rate,
            }
            process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            assert process.stdin is not None
            process.stdin.write(json.dumps(plan).encode() + b"\n")
            process.stdin.flush()
            workers.append(process)
        for w, proc in enumerate(workers):
            assert proc.stdout is not None
            if proc.stdout.readline() != b"ready\n":
                raise RuntimeError(f"load worker {w} did not start (exit {proc.wait()})")
        start_at = time.monotonic() + 0.2
        stop_at = start_at + duration
        for proc in workers:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"start_at": start_at, "stop_at": stop_at}).encode())
            proc.stdin.write(b"\n")
            proc.stdin.close()

        def collect(w: int) -> None:
            # Read before waiting: a worker blocked on a full pipe would never exit.
            proc = workers[w]
            assert proc.stdout is not None
            with proc.stdout:
                outputs[w] = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            usages[w] = usage.ru_utime + usage.ru_stime

        readers = [threading.Thread(target=collect, args=(w,)) for w in range(WORKERS)]
        for reader in readers:
            reader.start()
        peaks = {name: ProcessPeaks(pid) for name, pid in watched.items()}
        while time.monotonic() < start_at:
            time.sleep(0.05)
        cpu0 = {name: p.cpu() for name, p in peaks.items()}
        half = start_at + duration / 2
        while time.monotonic() < stop_at:
            for p in peaks.values():
                p.sample()
            if at_half_time is not None and at_half_time.ident is None:
                if time.monotonic() >= half:
                    at_half_time.start()
            time.sleep(0.1)
        cpu = {name: (p.cpu() - cpu0[name]) / duration for name, p in peaks.items()}
        deadline = stop_at + request_timeout + 30
        for reader in readers:
            reader.join(max(deadline - time.monotonic(), 0))
        if at_half_time is not None and at_half_time.ident is not None:
            at_half_time.join(max(deadline - time.monotonic(), 0))
        for p in peaks.values():
            p.sample()
        for w, proc in enumerate(workers):
            if proc.returncode != 0:
                raise RuntimeError(f"load worker {w} failed (exit {proc.returncode})")
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
    samples = [
        Sample(**json.loads(line)) for out in outputs for line in out.splitlines() if line.strip()
    ]
    # Includes the workers' start-up and the final dump: an upper bound.
    return _Drive(samples, cpu, peaks, sum(usages) / duration, start_at, rate)


def _summary(
    drive: _Drive,
    *,
    clients: int,
    duration: float,
    target: str,
    database: str,
    processes: int = 1,
) -> LoadResult:
    samples = drive.samples
    # From when each request was due: in an open loop a stalled server shows up here, not as
    # fewer requests (closed loops: due when sent).
    latency = {"all": percentiles([(s.ended - s.scheduled) * 1000 for s in samples])}
    for op, _ in MIX:
        latency[op] = percentiles(
            [(s.ended - s.scheduled) * 1000 for s in samples if s.op == op and s.status < 300]
        )
    server = drive.peaks[target]
    rate = len(samples) / duration
    if drive.rate is not None:
        # Answered requests over the time it took to answer them all: below the offered rate
        # when the server (or the generator) could not keep up.
        answered = [s for s in samples if s.status]
        span = max((s.ended for s in answered), default=0.0) - drive.start_at
        rate = len(answered) / max(span, duration)
    sent = [s for s in samples if s.code != "NotSent"]
    lateness = [(s.started - s.scheduled) * 1000 for s in sent]
    return LoadResult(
        target=target,
        clients=clients,
        duration=duration,
        revoked=0,
        requests=len(samples),
        requests_per_second=rate,
        by_status=dict(sorted(Counter(str(s.status) for s in samples).items())),
        by_code=dict(sorted(Counter(s.code for s in samples if s.code).items())),
        by_op=dict(sorted(Counter(s.op for s in samples).items())),
        server_errors=sum(1 for s in samples if s.status >= 500),
        no_answer=sum(1 for s in samples if s.status == 0),
        wrong_bytes=sum(1 for s in samples if s.wrong),
        latency_ms=latency,
        revocations=[],
        max_revocation_s=0.0,
        max_served_after_revoke_s=0.0,
        refused_not_revoked=0,
        not_revoked_refused_at_end=0,
        peak_rss_mib=server.rss_mib,
        peak_fds=server.fds,
        gateway_cpu_cores=drive.server_cpu.get("ferry", 0.0),
        seaweedfs_cpu_cores=drive.server_cpu.get("seaweedfs", 0.0),
        generator_cpu_cores=drive.generator_cpu_cores,
        cores=os.cpu_count() or 1,
        database=database,
        mode="closed" if drive.rate is None else "open",
        offered_rate=drive.rate,
        late_sends=sum(1 for ms in lateness if ms > LATE_S * 1000),
        late_ms=percentiles(lateness),
        held_sends=sum(1 for s in samples if s.held),
        not_sent=len(samples) - len(sent),
        processes=processes,
    )


def run_direct(
    server: Any,
    *,
    clients: int = 200,
    duration: float = 60.0,
    seaweedfs_pid: int,
    rate: float | None = None,
) -> LoadResult:
    """The peer: the same clients and mix straight at SeaweedFS, all with its admin key."""
    bucket = server.new_bucket("load")
    md5s = _seed(server, bucket)
    cred = {"access_key_id": server.access_key_id, "secret_access_key": server.secret_access_key}
    drive = _drive(
        server.endpoint_url,
        bucket,
        [cred] * clients,
        md5s,
        duration,
        {"seaweedfs": seaweedfs_pid},
        rate=rate,
    )
    return _summary(drive, clients=clients, duration=duration, target="seaweedfs", database="")


def _probe(endpoint: str, bucket: str, creds: list[dict[str, str]]) -> list[int]:
    """The status of one signed HEAD of a small object with each credential."""
    import urllib.error
    import urllib.request

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def head(cred: dict[str, str]) -> int:
        url = f"{endpoint}/{bucket}/{small_key(0)}"
        signed = AWSRequest("HEAD", url)
        key = Credentials(
            cred["access_key_id"], cred["secret_access_key"], cred.get("session_token")
        )
        S3SigV4Auth(key, "s3", "us-east-1").add_auth(signed)
        request = urllib.request.Request(url, method="HEAD", headers=dict(signed.headers))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(head, creds))


def run_load(
    server: Any,
    database_url: str,
    workdir: Path,
    *,
    clients: int = 200,
    duration: float = 60.0,
    revoke: int = 50,
    seaweedfs_pid: int | None = None,
    rate: float | None = None,
    processes: int = 1,
) -> LoadResult:
    """Seed, serve, issue, load, revoke mid-run, and measure; `server` is a running SeaweedFS.

    `processes`: `ferry serve --processes N`; CPU is summed over its processes, and the peak
    RSS and open descriptors are those of the largest one."""
    from tests.support.ferry import Ferry

    if not 0 <= revoke <= clients:
        raise ValueError("--revoke must be between 0 and --clients")
    backend_bucket = server.new_bucket("load")
    md5s = _seed(server, backend_bucket)
    ferry = Ferry.create(
        workdir / "ferry",
        database_url,
        storage_backend="s3",
        storage_endpoint_url=server.endpoint_url,
        storage_access_key_id=server.access_key_id,
        storage_secret_access_key=server.secret_access_key,
    )
    try:
        ferry.run("migrate")
        # Names of this run's own: runs may share a database (the tests' module does).
        tag = secrets.token_hex(4)
        email, bucket = f"load-{tag}@example.com", f"load-{tag}"
        owner = ferry.create_user(email)
        ferry.run("buckets", "create", bucket, "--owner", email, "--backend-bucket", backend_bucket)
        gateway = ferry.serve(*(["--processes", str(processes)] if processes > 1 else []))
        deadline = time.monotonic() + 30
        while len(ProcessPeaks(gateway.pid).processes()) < processes + (processes > 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway's processes did not start")
            time.sleep(0.1)
        creds = _issue(ferry, owner["api_key"], bucket, clients)
        chosen = sorted(random.Random(1).sample(range(clients), revoke))
        revocations = [Revocation(creds[i]["access_key_id"], i) for i in chosen]
        revoker = threading.Thread(target=_revoke, args=(ferry, owner["api_key"], revocations))
        watched = {"ferry": gateway.pid}
        if seaweedfs_pid is not None:
            watched["seaweedfs"] = seaweedfs_pid
        drive = _drive(
            ferry.gateway_url,
            bucket,
            creds,
            md5s,
            duration,
            watched,
            revoker if revoke else None,
            rate=rate,
        )
        # A client whose last request was still in flight at the end may have sent none after
        # its revoke: one more HEAD each shows the state the run left.
        at_end = _probe(ferry.gateway_url, bucket, creds)
    finally:
        ferry.stop()

    result = _summary(
        drive,
        clients=clients,
        duration=duration,
        target="ferry",
        database=database_url.split(":", 1)[0],
        processes=processes,
    )
    by_client: dict[int, list[Sample]] = {}
    for s in drive.samples:
        by_client.setdefault(s.client, []).append(s)
    stop_at = drive.start_at + duration
    for r in revocations:
        if not r.returned_at:
            continue  # the revoke call never returned: counted as not refused
        r.time_left = stop_at - r.returned_at
        mine = sorted(by_client.get(r.client, []), key=lambda s: s.started)
        served_late = [
            s.started - r.returned_at
            for s in mine
            if s.started > r.returned_at and 200 <= s.status < 300
        ]
        r.last_served_sent_after = max(served_late, default=0.0)
        refusals = [s for s in mine if s.status == 403]
        if refusals:
            # The first 403 received: in an open loop, not always the first one sent.
            first = min(refusals, key=lambda s: s.ended)
            r.refused_after = first.ended - r.returned_at
            r.served_after_refusal = sum(
                1 for s in mine if s.started > first.ended and 200 <= s.status < 300
            )
    revoked_clients = {r.client for r in revocations}
    for r in revocations:
        r.refused_at_end = at_end[r.client] == 403
    result.not_revoked_refused_at_end = sum(
        1 for i, status in enumerate(at_end) if i not in revoked_clients and status != 200
    )
    result.revoked = revoke
    result.revocations = revocations
    result.max_revocation_s = max(
        (r.refused_after if r.refused_after is not None else float("inf") for r in revocations),
        default=0.0,
    )
    result.max_served_after_revoke_s = max(
        (r.last_served_sent_after for r in revocations), default=0.0
    )
    result.refused_not_revoked = sum(
        1 for s in drive.samples if s.status == 403 and s.client not in revoked_clients
    )
    return result


def _mode(r: LoadResult) -> str:
    if r.offered_rate is None:
        return "closed loops (no pause: latency is about clients / throughput)"
    return (
        f"an open loop offering {r.offered_rate:.0f} requests/s in all (each client due every "
        f"{r.clients / r.offered_rate:.2f} s, evenly spread; latency from when each request "
        "was due)"
    )


def _processes(r: LoadResult) -> str:
    return "one process" if r.processes == 1 else f"{r.processes} processes"


def _latency(p: dict[str, float]) -> str:
    return f"{p['p50']:.0f} / {p['p95']:.0f} / {p['p99']:.0f}"


def render(result: LoadResult, peer: LoadResult | None = None) -> str:
    """The result as Markdown (the README and bench/REPORT.md show it), beside the peer's."""
    r = result
    lines = [
        f"{r.clients} clients (one credential each), {_mode(r)}, for {r.duration:.0f} s; "
        f"{r.revoked} credentials revoked at half time. `ferry serve` ({_processes(r)}, "
        f"{r.database}) on SeaweedFS; {r.cores} cores shared by the gateway, SeaweedFS and "
        "the generator (two processes)."
        + (
            " Peer: the same clients and mix straight at SeaweedFS (its admin key; no revocation)."
            if peer
            else ""
        ),
        "",
        "| measure | through Ferry | SeaweedFS direct | Ferry / direct |",
        "|---|---|---|---|",
    ]

    def row(label: str, mine: str, theirs: str = "", ratio: str = "") -> None:
        lines.append(f"| {label} | {mine} | {theirs} | {ratio} |")

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else ""

    def rate(x: LoadResult) -> str:
        offered = f"{x.offered_rate:.0f} / " if x.offered_rate is not None else ""
        return f"{offered}{x.requests_per_second:.0f} ({x.requests})"

    row(
        "requests/s offered / achieved" if r.offered_rate is not None else "requests/s",
        rate(r),
        rate(peer) if peer else "",
        ratio(r.requests_per_second, peer.requests_per_second) if peer else "",
    )
    for op, label in (
        ("all", "latency p50 / p95 / p99 ms, all"),
        ("get4k", "latency p50 / p95 / p99 ms, 4 KiB GET"),
        ("range", "latency p50 / p95 / p99 ms, 64 KiB range"),
        ("head", "latency p50 / p95 / p99 ms, HEAD"),
        ("list", "latency p50 / p95 / p99 ms, list 100"),
    ):
        row(
            label,
            _latency(r.latency_ms[op]),
            _latency(peer.latency_ms[op]) if peer else "",
            ratio(r.latency_ms[op]["p99"], peer.latency_ms[op]["p99"]) + " (p99)" if peer else "",
        )
    row(
        "status counts",
        ", ".join(f"{k}: {v}" for k, v in r.by_status.items()),
        ", ".join(f"{k}: {v}" for k, v in peer.by_status.items()) if peer else "",
    )
    row(
        "error codes",
        ", ".join(f"{k}: {v}" for k, v in r.by_code.items()) or "none",
        (", ".join(f"{k}: {v}" for k, v in peer.by_code.items()) or "none") if peer else "",
    )
    if r.mode == "open":

        def late(x: LoadResult) -> str:
            return (
                f"{x.late_sends} of {x.requests}; {x.late_ms['p99']:.0f} / "
                f"{x.late_ms['max']:.0f} ms"
            )

        row(
            f"sends late by > {LATE_S * 1000:.0f} ms; lateness p99 / max",
            late(r),
            late(peer) if peer else "",
        )
        row(
            f"sends held by the {MAX_IN_FLIGHT}-in-flight bound / not sent",
            f"{r.held_sends} / {r.not_sent}",
            f"{peer.held_sends} / {peer.not_sent}" if peer else "",
        )
    row("5xx", str(r.server_errors), str(peer.server_errors) if peer else "")
    row(
        "no answer (reset, 30 s timeout" + (", not sent)" if r.mode == "open" else ")"),
        str(r.no_answer),
        str(peer.no_answer) if peer else "",
    )
    row("wrong bytes", str(r.wrong_bytes), str(peer.wrong_bytes) if peer else "")
    if r.revocations:
        refused = sorted(x.refused_after for x in r.revocations if x.refused_after is not None)
        median = refused[len(refused) // 2] if refused else float("nan")
        calls = [x.returned_at - x.called_at for x in r.revocations if x.returned_at]
        row(
            f"revoked: the {len(r.revocations)} revoke calls (at once; the API shares the process)",
            f"max {max(calls, default=float('nan')):.2f} s; "
            f"{sum(x.time_left >= TIME_TO_BE_REFUSED for x in r.revocations)} returned with "
            f"{TIME_TO_BE_REFUSED:g} s of the run left",
        )
        row(
            "revoked: got a 403 during the run; time from the revoke returning",
            f"{len(refused)} of {len(r.revocations)}; median {median:.2f} s, "
            f"max {refused[-1] if refused else float('nan'):.2f} s",
        )
        row(
            "revoked: latest request sent after the revoke and still served",
            f"+{r.max_served_after_revoke_s:.2f} s",
        )
        row(
            "revoked: served after their first 403",
            str(sum(x.served_after_refusal for x in r.revocations)),
        )
        row(
            "revoked: refused a HEAD after the run",
            f"{sum(x.refused_at_end for x in r.revocations)} of {len(r.revocations)}",
        )
    row("403 to clients not revoked", str(r.refused_not_revoked))
    if r.target == "ferry":
        row("not revoked: refused a HEAD after the run", str(r.not_revoked_refused_at_end))
    row(
        "server peak RSS / open fds",
        f"{r.peak_rss_mib:.0f} MiB / {r.peak_fds}",
        f"{peer.peak_rss_mib:.0f} MiB / {peer.peak_fds}" if peer else "",
    )
    row(
        "CPU cores: gateway / SeaweedFS / generator",
        f"{r.gateway_cpu_cores:.2f} / {r.seaweedfs_cpu_cores:.2f} / {r.generator_cpu_cores:.2f}",
        f"- / {peer.seaweedfs_cpu_cores:.2f} / {peer.generator_cpu_cores:.2f}" if peer else "",
    )
    # CPU per request depends far less on what else the machine runs than latency does.
    mine = r.gateway_cpu_cores * r.duration * 1000 / max(r.requests, 1)
    theirs = peer.seaweedfs_cpu_cores * peer.duration * 1000 / max(peer.requests, 1) if peer else 0
    row(
        "server CPU ms per request (gateway; SeaweedFS)",
        f"{mine:.2f}",
        f"{theirs:.2f}" if peer else "",
        ratio(mine, theirs) if peer else "",
    )
    return "\n".join(lines)


def targets(result: LoadResult) -> list[tuple[str, bool, str]]:
    """The issue's targets: (what, met, measured)."""
    r = result
    return [
        ("zero 5xx", r.server_errors == 0, str(r.server_errors)),
        ("every request answered", r.no_answer == 0, str(r.no_answer)),
        ("zero wrong bytes", r.wrong_bytes == 0, str(r.wrong_bytes)),
        (
            f"p99 of 4 KiB GETs < 250 ms at {r.offered_rate:.0f} req/s offered (open loop)"
            if r.offered_rate is not None
            else f"p99 of 4 KiB GETs < 250 ms, closed loops ({r.clients} clients, saturation)",
            r.latency_ms["get4k"]["p99"] < 250,
            f"{r.latency_ms['get4k']['p99']:.0f} ms"
            + (
                f" ({r.late_sends} sends late by > {LATE_S * 1000:.0f} ms, "
                f"max {r.late_ms['max']:.0f} ms)"
                if r.mode == "open"
                else f" at {r.requests_per_second:.0f} req/s"
            ),
        ),
        (
            f"{r.revoked} revoked credentials refused within 1 s, never served after",
            r.revocations_ok,
            f"nothing sent later than +{r.max_served_after_revoke_s:.2f} s served",
        ),
        (
            "no 403 for the others, all still served at the end",
            r.refused_not_revoked == 0 and r.not_revoked_refused_at_end == 0,
            f"{r.refused_not_revoked}; {r.not_revoked_refused_at_end} refused at the end",
        ),
    ]


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
