"""Run every benchmark and write one Markdown report: bench/REPORT.md (`make bench`).

    .venv/bin/python bench/report.py [--quick] [--only gateway,copy,export,load,load-2,load-open]
                                     [--out PATH]

Each benchmark runs as its own process, one after the other (never two at once: they would
measure each other), its output shown as it goes and kept. The report has the machine, the
date, each benchmark's tables (every one measures a peer in the same run and gives the ratio),
the wall time of each, and the load benchmark's targets met or missed. The load benchmark runs
twice: closed loops (the gateway at saturation) and an open loop at a fixed offered rate
(latency at that load), each beside SeaweedFS straight in the same mode.

`--quick` runs each benchmark small, to check the whole pipeline in a few minutes; its report
says so and its figures mean little. The export benchmark needs PostgreSQL (see bench/export.py);
the others start what they need (SeaweedFS, `ferry serve`) on loopback.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, bench/ heads sys.path and bench/copy.py would shadow the standard library's
# copy module: the repository root takes its place.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Export and load run on PostgreSQL (a scratch database each), as a deployment with more than
# one process would.
POSTGRES = os.environ.get(
    "FERRY_TEST_DATABASE_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)

# The load benchmark's open loop offers this many requests/s in all, Ferry and SeaweedFS direct
# alike. About half what the closed loops get through Ferry on the 2-core machine the issue
# names (~475 req/s): below saturation, so the percentiles measure latency, not a queue.
OPEN_LOOP_RATE = 250

# (name, script, what it measures, arguments for a full run, arguments for --quick)
BENCHMARKS: list[tuple[str, str, str, list[str], list[str]]] = [
    (
        "gateway",
        "gateway",
        "Pull through the gateway: s5cmd, rclone and aws-cli, through Ferry (1 and 2 "
        "processes) against straight from SeaweedFS, with the gateway's CPU per GiB and per "
        "request",
        [],
        ["--runs", "1", "--big-mib", "32", "--small", "50", "--tools", "s5cmd,rclone"],
    ),
    (
        "copy",
        "copy",
        "Push: Ferry's copy engine between two SeaweedFS servers against rclone and s5cmd",
        ["--repeat", "5"],
        ["--big-mib", "64", "--small", "50", "--small-kib", "64"],
    ),
    (
        "export",
        "export",
        "Export: personal-data JSON at scale, tar.gz/zip archives against tar|gzip and zip",
        [],
        [
            "--audit-rows",
            "20000",
            "--usage-rows",
            "2000",
            "--big-mib",
            "64",
            "--small",
            "100",
            "--jpegs",
            "10",
        ],
    ),
    (
        "load",
        "load",
        "Load: concurrent clients with their own credentials, revocation mid-run (closed loops)",
        ["--postgres", POSTGRES],
        ["--postgres", POSTGRES, "--clients", "20", "--duration", "10", "--revoke", "5"],
    ),
    (
        "load-2",
        "load",
        "Load on `ferry serve --processes 2` (closed loops): what a second core adds",
        ["--postgres", POSTGRES, "--processes", "2"],
        [
            "--postgres",
            POSTGRES,
            "--clients",
            "20",
            "--duration",
            "10",
            "--revoke",
            "5",
            "--processes",
            "2",
        ],
    ),
    (
        "load-open",
        "load",
        "Load at a fixed offered rate (open loop), revocation mid-run",
        ["--postgres", POSTGRES, "--rate", str(OPEN_LOOP_RATE)],
        [
            "--postgres",
            POSTGRES,
            "--clients",
            "20",
            "--duration",
            "10",
            "--revoke",
            "5",
            "--rate",
            "50",
        ],
    ),
]


@dataclass
class Outcome:
    name: str
    script: str
    title: str
    seconds: float
    exit_code: int
    output: str
    load: dict[str, Any] | None = None


def _first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "not found"


def _tool(name: str) -> str:
    beside = BIN / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", mem),
        ("kernel", f"{platform.system()} {platform.release()}"),
        ("Python", platform.python_version()),
        ("SeaweedFS", _first_line([_tool("weed"), "version"])),
        ("rclone", _first_line([_tool("rclone"), "version"])),
        ("s5cmd", _first_line([_tool("s5cmd"), "version"])),
        ("aws-cli", _first_line([shutil.which("aws", path="/usr/bin") or "aws", "--version"])),
        ("Ferry commit", commit),
    ]


def run(name: str, script: str, title: str, args: list[str]) -> Outcome:
    """Run one benchmark, echoing its output live and keeping its stdout."""
    load_json = None
    if script == "load":
        load_json = Path(tempfile.mkstemp(prefix="ferry-load-", suffix=".json")[1])
        args = [*args, "--json", str(load_json)]
    command = [sys.executable, str(ROOT / "bench" / f"{script}.py"), *args]
    print(f"== bench/{script}.py {' '.join(args)}", flush=True)
    started = time.monotonic()
    # stderr joins stdout: progress notes belong in the report, and a failure's reason too.
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines = []
    with process.stdout:
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    code = process.wait()
    outcome = Outcome(name, script, title, time.monotonic() - started, code, "".join(lines))
    if load_json is not None:
        if code == 0 and load_json.stat().st_size:
            outcome.load = json.loads(load_json.read_text())
        load_json.unlink(missing_ok=True)
    return outcome


def _tables(output: str) -> str:
    """The benchmark's printout without its leading blank lines, as the report shows it."""
    return output.strip("\n")


def _args(o: Outcome) -> str:
    """What tells two runs of one script apart in the report (the load benchmark's rate and
    processes)."""
    if o.load is None:
        return ""
    args = ""
    if o.load.get("offered_rate") is not None:
        args += f" --rate {o.load['offered_rate']:.0f}"
    if o.load.get("processes", 1) > 1:
        args += f" --processes {o.load['processes']}"
    return args


def render(outcomes: list[Outcome], *, quick: bool, started: datetime, loads: list[str]) -> str:
    out = [
        "# Ferry benchmarks",
        "",
        f"Generated by `make bench` (`bench/report.py`) on {started:%Y-%m-%d %H:%M} UTC"
        + (
            " in **--quick** mode (small sizes: the figures only check the pipeline)"
            if quick
            else ""
        )
        + ". Every benchmark measures a peer in the same run on the same machine and gives the "
        "ratio. Other work on the machine skews the figures: the load averages below say how "
        "busy it was.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in machine()]
    out.append(
        f"| load average (1 min) before each benchmark, and at the end | {', '.join(loads)} |"
    )
    out += ["", "| benchmark | wall time | result |", "|---|---|---|"]
    for o in outcomes:
        state = "ok" if o.exit_code == 0 else f"**failed** (exit {o.exit_code})"
        out.append(f"| `bench/{o.script}.py{_args(o)}` | {o.seconds / 60:.1f} min | {state} |")
    for o in outcomes:
        out += ["", f"## {o.title}", "", f"`bench/{o.script}.py{_args(o)}`, {o.seconds:.0f} s.", ""]
        if o.load is not None:
            out.append(o.load["markdown"])
            out += ["", "| target | met | measured |", "|---|---|---|"]
            for t in o.load["targets"]:
                out.append(
                    f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['measured']} |"
                )
        else:
            out.append(_tables(o.output[-4000:] if o.exit_code else o.output) or "(no output)")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check the pipeline")
    parser.add_argument(
        "--only", help="comma-separated subset: gateway,copy,export,load,load-2,load-open"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "REPORT.md")
    options = parser.parse_args()
    wanted = set(options.only.split(",")) if options.only else None
    started = datetime.now(UTC)
    outcomes = []
    loads = []
    for name, script, title, full, quick in BENCHMARKS:
        if wanted is None or name in wanted:
            loads.append(f"{os.getloadavg()[0]:.1f}")
            outcomes.append(run(name, script, title, quick if options.quick else full))
    loads.append(f"{os.getloadavg()[0]:.1f}")
    report = render(outcomes, quick=options.quick, started=started, loads=loads)
    options.out.write_text(report)
    print(f"== wrote {options.out}")
    failed = [o.name for o in outcomes if o.exit_code != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
