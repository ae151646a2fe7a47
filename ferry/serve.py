"""`ferry serve`: the S3 gateway and the API in one process, stopped gracefully by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from ferry.config import Config
from ferry.listen import bind
from ferry.runtime import build_gateway_app, door_policy, open_runtime
from ferry.worker import export_settings, run_workers
from portability.api import build_api_app
from portability.credentials import GatewayAddress

log = logging.getLogger("ferry")


class _Listener(uvicorn.Server):
    # serve() installs its own signal handlers, and with two servers in one process the second
    # would take them from the first; the process installs one handler that stops both.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listener(app: ASGIApp, *, tls_cert: str = "", tls_key: str = "") -> _Listener:
    config = uvicorn.Config(
        app,
        lifespan="auto",
        log_level="warning",
        log_config=None,  # uvicorn's records go through ferry.logs' handler, JSON or text
        access_log=False,  # the apps log their own access lines, with the request id
        proxy_headers=False,  # X-Forwarded-For is trusted only per [gateway] trusted_proxies
        server_header=False,
        timeout_graceful_shutdown=10,
        ssl_certfile=tls_cert or None,
        ssl_keyfile=tls_key or None,
    )
    return _Listener(config)


async def serve(
    config: Config,
    *,
    gateway: bool = True,
    api: bool = True,
    worker: bool = True,
    inherited: dict[str, socket.socket] | None = None,
    shared_dir: str = "",
    banner: bool = True,
) -> None:
    """Serve until SIGTERM. `inherited`: listening sockets bound by a supervising parent
    (ferry.supervisor), by listener name; `shared_dir`: the state its processes share."""
    sockets: list[tuple[_Listener, socket.socket]] = []
    say = print if banner else _quiet
    inherited = inherited or {}
    try:
        async with open_runtime(config) as runtime:
            if gateway:
                g = config.gateway
                gateway_app = build_gateway_app(runtime, shared_dir=shared_dir)
                sockets.append(
                    (
                        _listener(gateway_app, tls_cert=g.tls_cert_file, tls_key=g.tls_key_file),
                        inherited.get("gateway") or bind("gateway.listen", g.listen),
                    )
                )
                say(f"S3 gateway  {g.public_url}", flush=True)
            if api:
                app = build_api_app(
                    engine=runtime.engine,
                    sessions=runtime.sessions,
                    storage=runtime.storage,
                    master_key=runtime.master_key,
                    endpoint=GatewayAddress(config.gateway.public_url, config.gateway.region),
                    export_settings=export_settings(config),
                    metrics_token=config.api.metrics_token,
                    egress=runtime.egress,
                    door=door_policy(config),
                    max_ttl_seconds=config.sts.max_ttl_seconds,
                    public_url=config.api.public_url,
                )
                sockets.append(
                    (_listener(app), inherited.get("api") or bind("api.listen", config.api.listen))
                )
                say(f"API         {config.api.public_url}/api/health", flush=True)
                say(f"Dashboard   {config.api.public_url}/", flush=True)

            _settle()
            loop = asyncio.get_running_loop()
            stopping = asyncio.Event()

            def stop() -> None:
                stopping.set()
                for server, _ in sockets:
                    server.should_exit = True

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop)
            tasks = [server.serve(sockets=[sock]) for server, sock in sockets]
            if worker:
                say("Workers     exports and transfers", flush=True)
                tasks.append(run_workers(runtime, stopping))
            if inherited:
                tasks.append(_stop_when_orphaned(stopping, stop))
            await asyncio.gather(*tasks)
            say("ferry stopped", flush=True)
    finally:
        for _, sock in sockets:
            sock.close()


def _quiet(*args: object, **kwargs: object) -> None:
    return None


def _settle() -> None:
    """Trim what every request pays for once the process has started."""
    # Start-up's objects (modules, the ORM's mappers, compiled statements) live as long as
    # the process: frozen, full collections no longer walk them between requests.
    gc.collect()
    gc.freeze()
    # No log line of ours names its source line, thread or process (ferry.logs), so the
    # records need not find them out: a sixth of the access log line's cost (the
    # "Optimization" section of Python's logging HOWTO).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


async def _stop_when_orphaned(stopping: asyncio.Event, stop: Callable[[], None]) -> None:
    """A supervised process stops if its parent dies (rather than serving on unsupervised)."""
    parent = os.getppid()
    while not stopping.is_set():
        if os.getppid() != parent:
            log.warning("the supervising process is gone; stopping")
            stop()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), 1.0)
