"""An export installation in-process, for the export end-to-end tests: the API app with the
request routes and the S3 gateway, both served by uvicorn on loopback ports in a background
event loop, the local storage backend, and an export worker the test drives pass by pass.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvicorn

from db.engine import create_engine, session_factory
from ferry.config import Config, DatabaseConfig, SecurityConfig, StorageConfig
from ferry.demo import create_demo
from ferry.masterkey import load_master_key
from gateway.app import GatewayApp
from gateway.audit import AuditWriter
from portability.api import build_api_app
from portability.credentials import GatewayAddress
from portability.exports.settings import ExportSettings, MiB
from portability.exports.worker import ExportWorker
from storage.egress import EgressPolicy
from storage.local import LocalStorage
from sts.store import CredentialStore
from tests.support.egress import FixedResolver
from tests.support.ferry import free_port, http
from tests.support.tricky_keys import add_tricky_keys

T = TypeVar("T")
CURL = shutil.which("curl")


class Loop:
    """An event loop in a thread: the servers live there; tests submit coroutines to it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 300) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Stack:
    loop: Loop
    workdir: Path
    storage_root: Path
    api_url: str
    gateway_url: str
    keys: dict[str, str]
    master_key: bytes
    settings: ExportSettings
    worker: ExportWorker
    sessions: Any
    storage: LocalStorage
    servers: list[uvicorn.Server] = field(default_factory=list)

    def api(self, method: str, path: str, *, body: Any = None, user: str = "alice") -> Any:
        token = self.keys.get(f"{user}@example.com", user)
        return http(method, self.api_url + path, body=body, token=token)

    def work(self, passes: int = 1) -> None:
        for _ in range(passes):
            self.loop.call(self.worker.run_once())

    def export(self, body: dict[str, Any], user: str = "alice") -> dict[str, Any]:
        """POST an export, build it, return the resource once ready."""
        status, created = self.api("POST", "/api/portability/export", body=body, user=user)
        assert status == 202, created
        assert created["status"] == "pending"
        self.work()
        status, done = self.api("GET", f"/api/portability/requests/{created['id']}", user=user)
        assert status == 200
        assert done["status"] == "ready", done
        return done  # type: ignore[no-any-return]

    def flush_audit(self) -> None:
        time.sleep(0.6)  # the gateway writes audit rows every 0.25 s


def run_curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    if CURL is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("curl is not installed (CI installs it)")
        pytest.skip("curl is not installed")
    return subprocess.run([CURL, "-sS", *args], capture_output=True, timeout=120, check=False)


def fetch(url: str, out: Path) -> int:
    """Download with curl; returns the HTTP status."""
    result = run_curl("-o", str(out), "-w", "%{http_code}", url)
    return int(result.stdout.decode() or 0)


async def serve_on(app: Any, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
        await asyncio.sleep(0.02)
    return server


@contextmanager
def open_stack(database_url: str, workdir: Path) -> Iterator[Stack]:
    """The installation in `workdir`, filled by `ferry demo` and the tricky keys."""
    config = Config(
        database=DatabaseConfig(url=database_url),
        storage=StorageConfig(root=str(workdir / "storage")),
        security=SecurityConfig(master_key_file=str(workdir / "master.key")),
    )
    loop = Loop()
    keys = loop.call(create_demo(config, keys_file=None, echo=lambda _: None))
    loop.call(add_tricky_keys(database_url, workdir / "storage", "alice-data"))
    master_key = load_master_key(config.security)
    gateway_port, api_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    settings = ExportSettings(
        gateway_url=gateway_url, part_size=40 * MiB, upload_chunk_size=5 * MiB
    )

    async def start() -> tuple[Any, Any, LocalStorage, list[uvicorn.Server], ExportWorker]:
        engine = create_engine(database_url)
        sessions = session_factory(engine)
        storage = LocalStorage(workdir / "storage")
        gateway = GatewayApp(
            storage=storage,
            credentials=CredentialStore(sessions, master_key),
            audit=AuditWriter(sessions),
        )
        endpoint = GatewayAddress(gateway_url, "us-east-1")
        # The transfer test names s3.example.net, which has no DNS here; nothing connects to it.
        egress = EgressPolicy(resolver=FixedResolver())
        api = build_api_app(
            engine=engine,
            sessions=sessions,
            storage=storage,
            master_key=master_key,
            endpoint=endpoint,
            export_settings=settings,
            egress=egress,
        )
        servers = [await serve_on(gateway, gateway_port), await serve_on(api, api_port)]
        worker = ExportWorker(
            sessions=sessions, storage=storage, master_key=master_key, settings=settings
        )
        return engine, sessions, storage, servers, worker

    engine, sessions, storage, servers, worker = loop.call(start())
    stack = Stack(
        loop=loop,
        workdir=workdir,
        storage_root=workdir / "storage",
        api_url=f"http://127.0.0.1:{api_port}",
        gateway_url=gateway_url,
        keys=keys,
        master_key=master_key,
        settings=settings,
        worker=worker,
        sessions=sessions,
        storage=storage,
        servers=servers,
    )
    yield stack

    async def stop() -> None:
        for server in servers:
            server.should_exit = True
        await asyncio.sleep(0.3)
        await storage.close()
        await engine.dispose()

    loop.call(stop())
    loop.close()
