"""Pull through Ferry's gateway against the same pull straight from SeaweedFS.

One SeaweedFS server holds three sets: `big` (4 objects of --big-mib MiB), `small` (--small
objects of 64 KiB) and `mixed` (one big object and the small ones). s5cmd, rclone (defaults)
and aws-cli v2 (`s3 sync`) download each set straight from SeaweedFS's own S3 gateway (the
peer: no scoping, no audit, no second hop) and through `ferry serve` with 1 and with 2
processes in front of it (SigV4, scope checks, audit rows, streaming proxy), in rounds that
rotate the order so the machine's noise falls on every row alike. Prints medians, MiB/s, the
ratio to straight, and the gateway's CPU: seconds per GiB streamed and milliseconds per
request (from /proc, every process of the gateway; requests from its /metrics), and the
whole machine's CPU in each run, which shows when the cores, not the gateway, set the pace.

    .venv/bin/python bench/gateway.py [--runs 3] [--big-mib 256] [--small 400]
        [--tools s5cmd,rclone,aws] [--sets big,small,mixed] [--processes 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

# Run as a script, bench/ heads sys.path and bench/copy.py would shadow the standard library's
# copy module (boto3 imports it): the repository root takes its place.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])
else:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procfs import cpu_seconds, machine_busy_seconds, peak_rss_mib, processes_of
from tests.fixtures.servers import start_seaweedfs
from tests.support.ferry import Ferry

MiB = 1024 * 1024
GiB = 1024 * MiB
BIN = Path(sys.executable).parent


def gateway_requests(api_url: str) -> float:
    with urllib.request.urlopen(api_url + "/metrics", timeout=10) as answer:  # noqa: S310
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ferry_gateway_requests_total{")
    )


# NamedTuples, not dataclasses: dataclasses imports the copy module, which bench/copy.py
# shadows until sys.path is mended below the imports.
class Source(NamedTuple):
    label: str
    endpoint: str
    bucket: str
    key_id: str
    secret: str
    ferry: Ferry | None = None
    pid: int = 0


class Row(NamedTuple):
    times: list[float]
    cpu: list[float]
    requests: list[float]
    busy: list[float]  # the whole machine's CPU seconds: client, SeaweedFS and gateway


def command(tool: str, source: Source, prefix: str, out: Path, env: dict[str, str]) -> list[str]:
    if tool == "s5cmd":
        return [
            str(BIN / "s5cmd"),
            "--endpoint-url",
            source.endpoint,
            "cp",
            f"s3://{source.bucket}/{prefix}*",
            f"{out}/",
        ]
    if tool == "rclone":
        env.update(
            RCLONE_CONFIG_SRC_TYPE="s3",
            RCLONE_CONFIG_SRC_PROVIDER="Other",
            RCLONE_CONFIG_SRC_ENDPOINT=source.endpoint,
            RCLONE_CONFIG_SRC_ACCESS_KEY_ID=source.key_id,
            RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY=source.secret,
        )
        return [str(BIN / "rclone"), "copy", f"src:{source.bucket}/{prefix}", str(out)]
    aws = shutil.which("aws", path="/usr/bin") or "aws"
    url = f"s3://{source.bucket}/{prefix}"
    return [aws, "--endpoint-url", source.endpoint, "s3", "sync", url, str(out)]


def serve_ferry(work: Path, server: Any, bucket: str, processes: int) -> Source:
    ferry = Ferry.create(
        work / f"ferry-{processes}",
        f"sqlite+aiosqlite:///{work / f'ferry-{processes}.db'}",
        storage_backend="s3",
        storage_endpoint_url=server.endpoint_url,
        storage_access_key_id=server.access_key_id,
        storage_secret_access_key=server.secret_access_key,
    )
    ferry.run("migrate")
    ferry.create_user("bench@example.com")
    ferry.run(
        "buckets", "create", "bench-data", "--owner", "bench@example.com",
        "--backend-bucket", bucket,
    )  # fmt: skip
    process = ferry.serve("--no-worker", "--processes", str(processes))
    deadline = time.monotonic() + 30
    while len(processes_of(process.pid)) < processes + (processes > 1):
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway processes did not start")
        time.sleep(0.1)
    cred = json.loads(
        ferry.run(
            "creds", "issue", "--user", "bench@example.com", "--bucket", "bench-data",
            "--no-session-token", "--ttl", "86400", "--json",
        ).stdout
    )  # fmt: skip
    label = f"Ferry, {processes} process{'es' if processes > 1 else ''}"
    return Source(
        label,
        ferry.gateway_url,
        "bench-data",
        cred["access_key_id"],
        cred["secret_access_key"],
        ferry,
        process.pid,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--tools", default="s5cmd,rclone,aws")
    parser.add_argument("--sets", default="big,small,mixed")
    parser.add_argument("--processes", default="1,2")
    options = parser.parse_args()
    tools = options.tools.split(",")
    sets = options.sets.split(",")

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-gateway-"))
    server, seaweed = start_seaweedfs(work / "seaweedfs", "seaweedfs")
    sources: list[Source] = []
    try:
        s3 = server.client()
        bucket = server.new_bucket("bench")
        big = work / "big.bin"
        with big.open("wb") as f:
            for _ in range(options.big_mib):
                f.write(os.urandom(MiB))
        for i in range(4):
            s3.upload_file(str(big), bucket, f"big/{i}.bin")
        s3.upload_file(str(big), bucket, "mixed/big.bin")
        for i in range(options.small):
            body = os.urandom(64 * 1024)
            s3.put_object(Bucket=bucket, Key=f"small/{i:03d}.bin", Body=body)
            s3.put_object(Bucket=bucket, Key=f"mixed/small/{i:03d}.bin", Body=body)
        sizes = {
            "big": 4 * options.big_mib * MiB,
            "small": options.small * 64 * 1024,
            "mixed": options.big_mib * MiB + options.small * 64 * 1024,
        }
        direct = Source(
            "SeaweedFS direct",
            server.endpoint_url,
            bucket,
            server.access_key_id,
            server.secret_access_key,
        )
        sources = [direct] + [
            serve_ferry(work, server, bucket, int(n)) for n in options.processes.split(",")
        ]

        rows: dict[tuple[str, str, str], Row] = {}
        cases = [(t, s, src) for t in tools for s in sets for src in sources]
        for round_ in range(options.runs):
            shift = round_ % len(cases)
            for tool, set_, source in cases[shift:] + cases[:shift]:
                env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
                env.update(
                    AWS_ACCESS_KEY_ID=source.key_id,
                    AWS_SECRET_ACCESS_KEY=source.secret,
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_REGION="us-east-1",
                    HOME=str(work),
                )
                out = work / "out"
                args = command(tool, source, f"{set_}/", out, env)
                cpu0 = cpu_seconds(source.pid) if source.pid else 0.0
                requests0 = gateway_requests(source.ferry.api_url) if source.ferry else 0.0
                busy0 = machine_busy_seconds()
                start = time.perf_counter()
                subprocess.run(args, env=env, check=True, capture_output=True, timeout=900)
                elapsed = time.perf_counter() - start
                row = rows.setdefault((tool, set_, source.label), Row([], [], [], []))
                row.times.append(elapsed)
                row.busy.append(machine_busy_seconds() - busy0)
                if source.ferry:
                    row.cpu.append(cpu_seconds(source.pid) - cpu0)
                    row.requests.append(gateway_requests(source.ferry.api_url) - requests0)
                shutil.rmtree(out, ignore_errors=True)

        print(
            f"\nPull through the gateway: big = 4 x {options.big_mib} MiB, small = "
            f"{options.small} x 64 KiB, mixed = 1 x {options.big_mib} MiB + the small ones; "
            f"median of {options.runs} rotated rounds, {os.cpu_count()} cores\n"
        )
        cores = os.cpu_count() or 1
        print(
            "| client | set | source | wall s | MiB/s | x straight | gateway CPU-s/GiB "
            "| CPU-ms/request | machine CPU-s (busy) | runs |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for tool in tools:
            for set_ in sets:
                straight = statistics.median(rows[(tool, set_, direct.label)].times)
                for source in sources:
                    row = rows[(tool, set_, source.label)]
                    wall = statistics.median(row.times)
                    rate = sizes[set_] / MiB / wall
                    per_gib = per_request = ""
                    if row.cpu:
                        cpu = statistics.median(row.cpu)
                        per_gib = f"{cpu / (sizes[set_] / GiB):.2f}"
                        requests = statistics.median(row.requests)
                        per_request = f"{1000 * cpu / requests:.2f}" if requests else ""
                    ratio = "" if source is direct else f"{straight / wall:.2f}x"
                    busy = statistics.median(row.busy)
                    machine = f"{busy:.2f} ({100 * busy / (wall * cores):.0f} %)"
                    runs = ", ".join(f"{t:.2f}" for t in row.times)
                    print(
                        f"| {tool} | {set_} | {source.label} | {wall:.2f} | {rate:.0f} | "
                        f"{ratio} | {per_gib} | {per_request} | {machine} | {runs} |"
                    )
        print(
            "\nmachine CPU-s: every process on the machine (client, SeaweedFS, gateway) during "
            "the run; busy: that over wall time x cores. Where the straight run already keeps "
            "the cores busy, a pull through Ferry takes longer by about the gateway's CPU "
            "divided by the cores: x straight comes to about straight's machine CPU-s / "
            "(that + the gateway's CPU-s), more only where the straight run left cores idle."
        )
        for source in sources[1:]:
            rss = ", ".join(f"{peak_rss_mib(p):.0f}" for p in processes_of(source.pid))
            print(f"\n{source.label}: peak RSS per process (MiB, supervisor first): {rss}")
    finally:
        for source in sources:
            if source.ferry is not None:
                source.ferry.stop()
        seaweed.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
