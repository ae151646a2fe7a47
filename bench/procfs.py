"""A server's processes as /proc shows them: the tree, CPU time, peak memory, descriptors.

Shared by the gateway benchmark and the load benchmark, which both watch `ferry serve` (a
supervisor and its serving processes when it runs several) while clients pull through it.
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def processes_of(pid: int) -> list[int]:
    """`pid` and its children (a supervisor's serving processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *map(int, children)]


def cpu_seconds(pid: int) -> float:
    """utime + stime, in seconds, of the process, its children and its reaped children."""
    total = 0
    for index, child in enumerate(processes_of(pid)):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # a child that ended between the listing and now
        # cutime and cstime (reaped children) of the parent only: a live child's own
        # figures are counted above, a dead one's are in its parent's.
        total += sum(int(f) for f in fields[11 : 15 if index == 0 else 13])
    return total / TICK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot, all cores together."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICK


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM); NaN where /proc does not say."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
