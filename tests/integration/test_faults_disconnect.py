"""Clients that hang up mid-GET: the backend read is cancelled, nothing leaks.

A served Ferry on the s3 backend (SeaweedFS) and one on the local backend each take 100 GETs
of a 20 MiB object from raw sockets that read a few KiB and close. Afterwards the gateway
process must hold no more backend connections than its keep-alive pool keeps for finished
requests (SeaweedFS), no open handles on data files (local), and about as many descriptors
as before: a leak of one per disconnect would show as ~100.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from storage.local import LocalStorage
from tests.fixtures.servers import S3Server
from tests.support.ferry import Ferry, http
from tests.support.signing import sign

MiB = 1024 * 1024
KEY = "big/20MiB.bin"
DISCONNECTS = 100
# An abandoned backend response is closed, not returned to the pool, so only requests that
# finished normally leave an idle keep-alive connection behind; this test makes none beside
# the disconnects, so a handful at most (10 leaves room for the health check's own).
POOL_BOUND = 10
FD_SLACK = 15  # descriptors the process may open for its own reasons meanwhile


@dataclass
class Served:
    ferry: Ferry
    process: subprocess.Popen[bytes]
    cred: dict[str, Any]
    bucket: str


def _serve(ferry: Ferry, email: str, bucket: str, backend_bucket: str) -> Served:
    user = ferry.create_user(email)
    ferry.run("buckets", "create", bucket, "--owner", email, "--backend-bucket", backend_bucket)
    process = ferry.serve()
    status, cred = http(
        "POST",
        ferry.api_url + "/api/portability/credentials",
        body={"bucket": bucket},
        token=user["api_key"],
    )
    assert status == 201, cred
    return Served(ferry, process, cred, bucket)


@pytest.fixture
def on_seaweedfs(
    database_url: str, seaweedfs: S3Server, tmp_path: Path
) -> Iterator[tuple[Served, int]]:
    backend_bucket = seaweedfs.new_bucket("disconnect")
    seaweedfs.client().put_object(Bucket=backend_bucket, Key=KEY, Body=os.urandom(20 * MiB))
    ferry = Ferry.create(
        tmp_path / "ferry",
        database_url,
        storage_backend="s3",
        storage_endpoint_url=seaweedfs.endpoint_url,
        storage_access_key_id=seaweedfs.access_key_id,
        storage_secret_access_key=seaweedfs.secret_access_key,
    )
    try:
        served = _serve(ferry, "hangup-s3@example.com", "hangup-s3", backend_bucket)
        port = urlsplit(seaweedfs.endpoint_url).port
        assert port is not None
        yield served, port
    finally:
        ferry.stop()


@pytest.fixture
def on_local(database_url: str, tmp_path: Path) -> Iterator[Served]:
    ferry = Ferry.create(tmp_path / "ferry", database_url)

    async def seed() -> None:
        storage = LocalStorage(Path(ferry.env["FERRY_STORAGE_ROOT"]))
        await storage.create_bucket("hangup-local")

        async def body() -> AsyncIterator[bytes]:
            for _ in range(20):
                yield os.urandom(MiB)

        await storage.put("hangup-local", KEY, body(), size=20 * MiB)
        await storage.close()

    asyncio.run(seed())
    try:
        yield _serve(ferry, "hangup-local@example.com", "hangup-local", "hangup-local")
    finally:
        ferry.stop()


@contextlib.contextmanager
def _mid_get(served: Served) -> Iterator[None]:
    """Send a signed GET for the big object, read a few KiB of the body; close on exit."""
    url = f"{served.ferry.gateway_url}/{served.bucket}/{KEY}"
    split = urlsplit(url)
    c = served.cred
    signed = sign(
        url,
        access_key_id=c["access_key_id"],
        secret=c["secret_access_key"],
        token=c["session_token"],
    )
    head = f"GET {split.path} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in signed.headers.items()
    )
    head += f"Host: {split.netloc}\r\n\r\n"
    assert split.hostname is not None and split.port is not None
    with socket.create_connection((split.hostname, split.port), timeout=10) as sock:
        sock.sendall(head.encode())
        received = b""
        while len(received) < 8192:
            chunk = sock.recv(8192)
            assert chunk, f"the gateway closed first: {received[:300]!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received[:300]
        yield


def _hang_up_mid_get(served: Served) -> None:
    with _mid_get(served):
        pass


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established_to(pid: int, port: int) -> int:
    """The process's established TCP connections to 127.0.0.1:`port` (from /proc)."""
    mine = _socket_inodes(pid)
    count = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and int(remote.split(":")[1], 16) == port and inode in mine:
            count += 1
    return count


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def data_handles(pid: int, root: Path) -> int:
    """Descriptors of the process open on files under the storage root."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(root.resolve())):
            count += 1
    return count


def _settles(measure: Callable[[], int], bound: int, seconds: float = 10) -> int:
    """Poll until `measure()` is at most `bound` (or time is up); the last value."""
    deadline = time.monotonic() + seconds
    value = measure()
    while value > bound and time.monotonic() < deadline:
        time.sleep(0.2)
        value = measure()
    return value


def test_100_disconnects_leave_no_backend_connections(on_seaweedfs: tuple[Served, int]) -> None:
    served, s3_port = on_seaweedfs
    pid = served.process.pid
    _hang_up_mid_get(served)  # warm up: imports, pools, the credential cache
    time.sleep(1)
    fds_before = open_fds(pid)
    with _mid_get(served):  # the measure sees a streaming GET's backend connection
        assert established_to(pid, s3_port) >= 1
    peak = 0
    for _ in range(DISCONNECTS):
        _hang_up_mid_get(served)
        peak = max(peak, established_to(pid, s3_port))
    after = _settles(lambda: established_to(pid, s3_port), POOL_BOUND)
    assert after <= POOL_BOUND, f"{after} connections to SeaweedFS left (peak {peak})"
    fds_after = _settles(lambda: open_fds(pid), fds_before + FD_SLACK)
    assert fds_after <= fds_before + FD_SLACK, (fds_before, fds_after)
    # Still serving: a whole GET works after all that.
    status, _ = http("GET", served.ferry.api_url + "/api/health")
    assert status == 200


def test_100_disconnects_leave_no_open_data_files(on_local: Served) -> None:
    pid = on_local.process.pid
    root = Path(on_local.ferry.env["FERRY_STORAGE_ROOT"])
    _hang_up_mid_get(on_local)
    time.sleep(1)
    fds_before = open_fds(pid)
    handles_before = _settles(lambda: data_handles(pid, root), 0)
    with _mid_get(on_local):  # the measure sees a streaming GET's open file
        assert data_handles(pid, root) >= handles_before + 1
    for _ in range(DISCONNECTS):
        _hang_up_mid_get(on_local)
    handles = _settles(lambda: data_handles(pid, root), handles_before)
    assert handles <= handles_before, f"{handles} data files still open"
    fds_after = _settles(lambda: open_fds(pid), fds_before + FD_SLACK)
    assert fds_after <= fds_before + FD_SLACK, (fds_before, fds_after)
