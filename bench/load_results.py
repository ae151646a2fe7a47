"""What a load run measured: the per-run result, each revocation's outcome, and the summary
of a run's samples into them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from bench.load_clients import LATE_S, MIX
from bench.load_drive import Drive

# Seconds of the run a revoke must return before its end for its client to be refused in it.
TIME_TO_BE_REFUSED = 3.0


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


def summary(
    drive: Drive,
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
