"""Drive the load: start the worker processes, release them together, watch the servers.

The controller's side of a run: it hands each worker its share of the credentials, samples
the watched server processes' CPU, peak RSS and open descriptors from /proc while the clients
run, starts the revocations at half time, and collects every worker's samples.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.load_clients import Sample
from bench.procfs import cpu_seconds, open_fds, peak_rss_mib, processes_of

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
# The workers run the load benchmark's own script, in its hidden `--worker` mode.
LOAD_SCRIPT = Path(__file__).resolve().with_name("load.py")


@dataclass
class ProcessPeaks:
    """Peaks of a process tree's resident memory and open descriptors, sampled from /proc."""

    pid: int
    rss_mib: float = 0.0  # the largest of any one process's peak
    fds: int = 0  # the largest of any one process's count

    def sample(self) -> None:
        for pid in processes_of(self.pid):
            try:
                if not math.isnan(rss := peak_rss_mib(pid)):
                    self.rss_mib = max(self.rss_mib, rss)
                self.fds = max(self.fds, open_fds(pid))
            except OSError:
                pass  # the process has ended; keep the peaks seen

    def cpu(self) -> float:
        return cpu_seconds(self.pid)


@dataclass
class Drive:
    samples: list[Sample]
    server_cpu: dict[str, float]  # cores used during the run, by process name
    peaks: dict[str, ProcessPeaks]
    generator_cpu_cores: float
    start_at: float
    rate: float | None  # offered requests/s (open loop); None: closed loops


def drive_clients(
    endpoint: str,
    bucket: str,
    creds: list[dict[str, str]],
    md5s: dict[str, str],
    duration: float,
    watched: dict[str, int],
    at_half_time: threading.Thread | None = None,
    rate: float | None = None,
) -> Drive:
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
                [sys.executable, str(LOAD_SCRIPT), "--worker"],
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
    return Drive(samples, cpu, peaks, sum(usages) / duration, start_at, rate)
