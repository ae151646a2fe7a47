"""The load result as Markdown, beside its peer's, and the targets it is held to."""

from __future__ import annotations

from bench.load_clients import LATE_S, MAX_IN_FLIGHT
from bench.load_results import TIME_TO_BE_REFUSED, LoadResult


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
    """The targets a load run is held to: (what, met, measured)."""
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
