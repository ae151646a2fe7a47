"""Pull throughput through Ferry's gateway against the same pull straight from SeaweedFS.

One SeaweedFS server holds one 256 MiB object and 500 objects of 64 KiB. rclone (defaults)
and aws-cli v2 (`s3 sync`) each download the set three times straight from SeaweedFS's own S3
gateway (the peer: no scoping, no audit, no second hop) and three times through `ferry serve`
(SigV4 verification, scope checks, audit rows, streaming proxy to the same SeaweedFS). Prints
medians, throughput, the ratio and the gateway's peak RSS.

    .venv/bin/python bench/gateway.py [--runs 3]
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
from pathlib import Path

# Run as a script, bench/ heads sys.path and bench/copy.py would shadow the standard library's
# copy module (boto3 imports it): the repository root takes its place.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])
else:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fixtures.servers import start_seaweedfs
from tests.support.ferry import Ferry

MiB = 1024 * 1024
BIN = Path(sys.executable).parent


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=900)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-gateway-"))
    server, process = start_seaweedfs(work / "seaweedfs", "seaweedfs")
    ferry = None
    try:
        s3 = server.client()
        bucket = server.new_bucket("bench")
        big = work / "big.bin"
        with big.open("wb") as f:
            for _ in range(256):
                f.write(os.urandom(MiB))
        s3.upload_file(str(big), bucket, "data/big.bin")
        for i in range(500):
            s3.put_object(Bucket=bucket, Key=f"data/small/{i:03d}.bin", Body=os.urandom(64 * 1024))
        total_mib = 256 + 500 * 64 / 1024

        ferry = Ferry.create(
            work / "ferry",
            f"sqlite+aiosqlite:///{work / 'ferry.db'}",
            storage_backend="s3",
            storage_endpoint_url=server.endpoint_url,
            storage_access_key_id=server.access_key_id,
            storage_secret_access_key=server.secret_access_key,
        )
        ferry.run("migrate")
        ferry.create_user("bench@example.com")
        ferry.run(
            "buckets",
            "create",
            "bench-data",
            "--owner",
            "bench@example.com",
            "--backend-bucket",
            bucket,
        )
        gateway = ferry.serve()
        cred = json.loads(
            ferry.run(
                "creds",
                "issue",
                "--user",
                "bench@example.com",
                "--bucket",
                "bench-data",
                "--prefix",
                "data/",
                "--no-session-token",
                "--json",
            ).stdout
        )

        sources = {
            "SeaweedFS direct": (
                server.endpoint_url,
                bucket,
                server.access_key_id,
                server.secret_access_key,
            ),
            "through Ferry": (
                ferry.gateway_url,
                "bench-data",
                cred["access_key_id"],
                cred["secret_access_key"],
            ),
        }
        aws = shutil.which("aws", path="/usr/bin") or "aws"
        rows = []
        for tool in ("rclone", "aws-cli v2"):
            medians = {}
            for label, (endpoint, name, key_id, secret) in sources.items():
                env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
                env.update(
                    AWS_ACCESS_KEY_ID=key_id,
                    AWS_SECRET_ACCESS_KEY=secret,
                    AWS_DEFAULT_REGION="us-east-1",
                    HOME=str(work),
                )
                times = []
                for run in range(options.runs):
                    out = work / f"out-{tool[:3]}-{label[:3]}-{run}"
                    if tool == "rclone":
                        env.update(
                            {
                                "RCLONE_CONFIG_SRC_TYPE": "s3",
                                "RCLONE_CONFIG_SRC_PROVIDER": "Other",
                                "RCLONE_CONFIG_SRC_ENDPOINT": endpoint,
                                "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": key_id,
                                "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": secret,
                            }
                        )
                        args = [str(BIN / "rclone"), "copy", f"src:{name}/data/", str(out)]
                    else:
                        args = [
                            aws,
                            "--endpoint-url",
                            endpoint,
                            "s3",
                            "sync",
                            f"s3://{name}/data/",
                            str(out),
                        ]
                    times.append(timed(args, env))
                    shutil.rmtree(out)
                medians[label] = statistics.median(times)
                rows.append((tool, label, medians[label], total_mib / medians[label], times))
            ratio = medians["SeaweedFS direct"] / medians["through Ferry"]
            rows.append((tool, "ratio Ferry / direct (throughput)", ratio, None, []))

        print(
            f"\nPull of {total_mib:.0f} MiB (1 x 256 MiB + 500 x 64 KiB), "
            f"median of {options.runs} runs, {os.cpu_count()} cores\n"
        )
        print("| client | source | wall s (median) | MiB/s | runs |")
        print("|---|---|---|---|---|")
        for tool, label, value, rate, times in rows:
            if rate is None:
                print(f"| {tool} | {label} | **{value:.2f}** | | |")
            else:
                runs = ", ".join(f"{t:.2f}" for t in times)
                print(f"| {tool} | {label} | {value:.2f} | {rate:.0f} | {runs} |")
        print(f"\nFerry gateway peak RSS: {peak_rss_mib(gateway.pid):.0f} MiB")
    finally:
        if ferry is not None:
            ferry.stop()
        process.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
