"""Run `ferry` as its users do: real processes on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FERRY = str(Path(sys.executable).with_name("ferry"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, *, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """A JSON request; returns (status, decoded body or None)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def seed_local_bucket(root: Path, bucket: str, files: dict[str, bytes]) -> None:
    """Create `bucket` in the local backend at `root` holding `files` (key -> bytes)."""
    from storage.local import LocalStorage

    async def chunks(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1024 * 1024):
            yield data[start : start + 1024 * 1024]

    async def seed() -> None:
        storage = LocalStorage(root)
        await storage.create_bucket(bucket)
        for key, data in files.items():
            await storage.put(bucket, key, chunks(data), size=len(data))
        await storage.close()

    asyncio.run(seed())


@dataclass
class Ferry:
    """One Ferry installation: a config (by environment), a database, a storage backend."""

    workdir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def create(cls, workdir: Path, database_url: str, **settings: str) -> Ferry:
        workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
        gateway, api = free_port(), free_port()
        env.update(
            FERRY_DATABASE_URL=database_url,
            FERRY_STORAGE_ROOT=str(workdir / "storage"),
            FERRY_SECURITY_MASTER_KEY_FILE=str(workdir / "master.key"),
            FERRY_GATEWAY_LISTEN=f"127.0.0.1:{gateway}",
            FERRY_GATEWAY_PUBLIC_URL=f"http://127.0.0.1:{gateway}",
            FERRY_API_LISTEN=f"127.0.0.1:{api}",
            FERRY_API_PUBLIC_URL=f"http://127.0.0.1:{api}",
        )
        env.update({f"FERRY_{k.upper()}": v for k, v in settings.items()})
        return cls(workdir, env)

    @property
    def gateway_url(self) -> str:
        return self.env["FERRY_GATEWAY_PUBLIC_URL"]

    @property
    def api_url(self) -> str:
        return self.env["FERRY_API_PUBLIC_URL"]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [FERRY, *args], env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ferry {' '.join(args)} failed: {result.stderr}")
        return result

    def create_user(self, email: str, *, admin: bool = False) -> dict[str, str]:
        args = ["users", "create", email, "--json"] + (["--admin"] if admin else [])
        answer: dict[str, str] = json.loads(self.run(*args).stdout)
        return answer

    def serve(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `ferry serve` and wait until both listeners answer."""
        env = env or self.env
        with (self.workdir / f"serve-{len(self.processes)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [FERRY, "serve", *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes.append(proc)
        api = "http://" + env["FERRY_API_LISTEN"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"ferry serve exited: {self.log(len(self.processes) - 1)}")
            try:
                urllib.request.urlopen(api + "/api/health", timeout=2)  # noqa: S310
                return proc
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.1)
        raise AssertionError(f"ferry serve did not start: {self.log(len(self.processes) - 1)}")

    def demo_key(self, email: str) -> str:
        """The API key `ferry demo --keys-file <workdir>/keys.txt` gave `email`."""
        for line in (self.workdir / "keys.txt").read_text().splitlines():
            who, key = line.split()
            if who == email:
                return key
        raise AssertionError(f"no demo key for {email}")

    def wait_for_request(
        self, key: str, request_id: str, states: tuple[str, ...], *, seconds: float = 180
    ) -> dict[str, Any]:
        """The request's resource from the API once its status is one of `states`."""
        deadline = time.monotonic() + seconds
        while True:
            status, body = http(
                "GET", f"{self.api_url}/api/portability/requests/{request_id}", token=key
            )
            assert status == 200, body
            if body["status"] in states:
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"request {request_id} stayed {body['status']}: {self.log()[-3000:]}"
                )
            time.sleep(0.25)

    def log(self, index: int = 0) -> str:
        return (self.workdir / f"serve-{index}.log").read_text(errors="replace")

    def log_records(self, index: int = 0) -> list[dict[str, Any]]:
        """The JSON log lines (FERRY_LOG_FORMAT=json) of a `serve`; its banner is skipped."""
        complete = self.log(index).split("\n")[:-1]  # the last may be half written
        return [json.loads(line) for line in complete if line.startswith("{")]

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()


@contextlib.contextmanager
def served_demo(workdir: Path, database_url: str, **settings: str) -> Iterator[Ferry]:
    """A Ferry with the demo's users and keys (in `keys.txt`), serving until the block ends."""
    ferry = Ferry.create(workdir, database_url, **settings)
    ferry.run("demo", "--keys-file", str(ferry.workdir / "keys.txt"))
    ferry.serve()
    try:
        yield ferry
    finally:
        ferry.stop()
