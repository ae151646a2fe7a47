"""`ferry serve`: the S3 gateway and the API in one process, stopped gracefully by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from ferry.config import Config, ConfigError, parse_listen
from ferry.runtime import build_gateway_app, door_policy, open_runtime
from ferry.worker import export_settings, run_workers
from portability.api import build_api_app
from portability.credentials import Endpoint

log = logging.getLogger("ferry")


class _Listener(uvicorn.Server):
    # serve() installs its own signal handlers, and with two servers in one process the second
    # would take them from the first; the process installs one handler that stops both.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(where: str, listen: str) -> socket.socket:
    """Bind before starting so a busy port is one clear error, not a server exiting mid-start."""
    host, port = parse_listen(where, listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{where}: cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


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
    config: Config, *, gateway: bool = True, api: bool = True, worker: bool = True
) -> None:
    sockets: list[tuple[_Listener, socket.socket]] = []
    try:
        async with open_runtime(config) as runtime:
            if gateway:
                g = config.gateway
                sockets.append(
                    (
                        _listener(
                            build_gateway_app(runtime),
                            tls_cert=g.tls_cert_file,
                            tls_key=g.tls_key_file,
                        ),
                        bind("gateway.listen", g.listen),
                    )
                )
                print(f"S3 gateway  {g.public_url}", flush=True)
            if api:
                app = build_api_app(
                    engine=runtime.engine,
                    sessions=runtime.sessions,
                    storage=runtime.storage,
                    master_key=runtime.master_key,
                    endpoint=Endpoint(config.gateway.public_url, config.gateway.region),
                    export_settings=export_settings(config),
                    metrics_token=config.api.metrics_token,
                    egress=runtime.egress,
                    door=door_policy(config),
                    public_url=config.api.public_url,
                )
                sockets.append((_listener(app), bind("api.listen", config.api.listen)))
                print(f"API         {config.api.public_url}/api/health", flush=True)
                print(f"Dashboard   {config.api.public_url}/", flush=True)

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
                print("Workers     exports and transfers", flush=True)
                tasks.append(run_workers(runtime, stopping))
            await asyncio.gather(*tasks)
            print("ferry stopped", flush=True)
    finally:
        for _, sock in sockets:
            sock.close()
