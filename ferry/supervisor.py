"""`ferry serve --processes N`: N serving processes on one set of listening sockets.

One Python process serves on one core. The parent binds the gateway's and the API's sockets
once and starts N children (`ferry serve --child`) that inherit them, so the kernel spreads
connections across the children, as gunicorn's and uvicorn's supervisors do. The parent
serves nothing itself: it restarts a child that dies and passes SIGTERM and SIGINT on, then
waits for every child's graceful stop.

What the children share: the database (revocation reaches each within its refresh, as it
reaches any other gateway instance); a private directory with prometheus_client's
multiprocess files (any child's /metrics sums every child's counters) and the bandwidth
caps' state (storage.throttle.SharedTokenBucket). Only child 0 runs the export and transfer
workers: once per machine, not once per process. Each child batches its own audit rows and
writes them at its graceful stop.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from ferry.config import Config
from ferry.listen import bind

log = logging.getLogger("ferry.supervisor")

STOP_TIMEOUT = 30.0  # seconds a child has for its graceful stop before it is killed
MAX_BACKOFF = 10.0


def supervise(
    config: Config,
    *,
    processes: int,
    config_path: str | None,
    gateway: bool,
    api: bool,
    worker: bool,
) -> int:
    """Run until SIGTERM/SIGINT; the exit code is 0 after a clean stop."""
    listeners: dict[str, socket.socket] = {}
    if gateway:
        listeners["gateway"] = bind("gateway.listen", config.gateway.listen)
    if api:
        listeners["api"] = bind("api.listen", config.api.listen)
    shared = Path(tempfile.mkdtemp(prefix="ferry-serve-"))  # 0700
    (shared / "metrics").mkdir(mode=0o700)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(shared / "metrics")}
    fds = ",".join(f"{name}={sock.fileno()}" for name, sock in listeners.items())

    def spawn(index: int) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-c", "from ferry.cli import main; main()", "serve"]
        args += ["--child", str(index), "--listen-fds", fds, "--shared-dir", str(shared)]
        if config_path:
            args += ["--config", config_path]
        if not api:
            args.append("--gateway-only")
        if not gateway:
            args.append("--api-only")
        if index > 0 or not worker:
            args.append("--no-worker")
        return subprocess.Popen(args, env=env, pass_fds=[s.fileno() for s in listeners.values()])

    stopping: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = {index: spawn(index) for index in range(processes)}
    started = {index: time.monotonic() for index in children}
    failures = dict.fromkeys(children, 0)
    restart_at: dict[int, float] = {}
    print(f"Supervisor  {processes} processes (pid {os.getpid()})", flush=True)
    try:
        while not stopping:
            now = time.monotonic()
            for index, child in list(children.items()):
                if index in restart_at:
                    if now >= restart_at[index]:
                        del restart_at[index]
                        children[index] = spawn(index)
                        started[index] = now
                    continue
                code = child.poll()
                if code is None:
                    continue
                # A child that keeps dying at start (a broken config, a full disk) is not
                # restarted in a hot loop: each quick death doubles the wait.
                quick = now - started[index] < 5
                failures[index] = failures[index] + 1 if quick else 0
                wait = min(MAX_BACKOFF, 0.5 * 2 ** failures[index]) if quick else 0.0
                log.warning(
                    "process %d (pid %d) exited with %s; starting it again in %.1f s",
                    index,
                    child.pid,
                    code,
                    wait,
                )
                restart_at[index] = now + wait
            time.sleep(0.1)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(stopping[0])
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process pid %d did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
        print("ferry stopped", flush=True)
        return 0
    finally:
        for sock in listeners.values():
            sock.close()
        shutil.rmtree(shared, ignore_errors=True)
