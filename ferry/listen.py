"""The listening sockets of `ferry serve`, bound before anything starts.

Its own module so that the supervisor of `ferry serve --processes N`, which binds the sockets
its children inherit and serves nothing itself, does not import the servers.
"""

from __future__ import annotations

import socket

from ferry.config import ConfigError, parse_listen


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
