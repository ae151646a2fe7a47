"""The storage backend dies while clients pull: 503 SlowDown at once, retries finish the job.

A private SeaweedFS (it gets SIGKILLed, so not the session's) sits behind a served Ferry on
the s3 backend. aws-cli v2 syncs a prefix through the gateway; in the middle SeaweedFS is
killed, stays down for a few seconds and is started again on the same ports and data. While
it is down a signed GET must be answered 503 with an S3 SlowDown/ServiceUnavailable document
within seconds (not hang, not 500), a body that was streaming must end (truncated, not hang),
and aws-cli's own retries must finish the sync with every file byte-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http import client as httpclient
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.fixtures.servers import S3Server, _Server, start_seaweedfs
from tests.support.ferry import Ferry, http
from tests.support.signing import sign

MiB = 1024 * 1024
PREFIX = "sync/"
BIG = [f"{PREFIX}big/{i}.bin" for i in range(2)]
STREAMED = "stream/one.bin"
SYNC_RATE = 2 * MiB  # the sync's credential is throttled: the kill lands mid-sync (~8 s)
STREAM_RATE = 1 * MiB  # and the streamed GET's, so the kill lands mid-body
DOWN_SECONDS = 4.0
ANSWER_BOUND = 10.0  # seconds a request may take while the backend is down
READ_TIMEOUT = 3  # [storage] timeout_seconds of this installation (default 20)


@dataclass
class Installation:
    ferry: Ferry
    server: S3Server
    process: _Server
    bucket: str
    backend_bucket: str
    files: dict[str, bytes]
    creds: dict[str, dict[str, Any]]


def _aws() -> str:
    found = "/usr/bin/aws" if Path("/usr/bin/aws").exists() else shutil.which("aws")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("aws-cli is not installed (CI installs it)")
        pytest.skip("aws-cli is not installed")
    return found


@pytest.fixture(scope="module")
def installation(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installation]:
    server, process = start_seaweedfs(tmp_path_factory.mktemp("weed-faults"), "weed-faults")
    ferry: Ferry | None = None
    try:
        backend_bucket = server.new_bucket("faults")
        rng = random.Random(11)
        files = {
            f"{PREFIX}small/{i:02d}.dat": rng.randbytes(rng.randint(1, 64_000)) for i in range(48)
        }
        files.update({key: os.urandom(8 * MiB) for key in BIG})
        files[STREAMED] = os.urandom(24 * MiB)
        s3 = server.client()
        for key, data in files.items():
            s3.put_object(Bucket=backend_bucket, Key=key, Body=data)
        ferry = Ferry.create(
            tmp_path_factory.mktemp("ferry-faults"),
            database_url,
            storage_backend="s3",
            storage_endpoint_url=server.endpoint_url,
            storage_access_key_id=server.access_key_id,
            storage_secret_access_key=server.secret_access_key,
            storage_timeout_seconds=str(READ_TIMEOUT),
        )
        user = ferry.create_user("backend-faults@example.com")
        ferry.run(
            "buckets", "create", "faults", "--owner", "backend-faults@example.com",
            "--backend-bucket", backend_bucket,
        )  # fmt: skip
        ferry.serve()
        creds = {}
        for name, rate in (("sync", SYNC_RATE), ("stream", STREAM_RATE), ("probe", None)):
            status, cred = http(
                "POST",
                ferry.api_url + "/api/portability/credentials",
                body={"bucket": "faults", "max_bytes_per_second": rate},
                token=user["api_key"],
            )
            assert status == 201, cred
            creds[name] = cred
        yield Installation(ferry, server, process, "faults", backend_bucket, files, creds)
    finally:
        if ferry is not None:
            ferry.stop()
        process.stop()


def _signed_headers(inst: Installation, cred: str, url: str) -> dict[str, str]:
    c = inst.creds[cred]
    request = sign(
        url,
        access_key_id=c["access_key_id"],
        secret=c["secret_access_key"],
        token=c["session_token"],
    )
    return dict(request.headers.items())


@contextlib.contextmanager
def _get(
    inst: Installation, cred: str, key: str, timeout: float
) -> Iterator[httpclient.HTTPResponse]:
    """A signed GET on its own connection, closed afterwards."""
    url = f"{inst.ferry.gateway_url}/{inst.bucket}/{key}"
    split = urlsplit(url)
    connection = httpclient.HTTPConnection(split.netloc, timeout=timeout)
    try:
        connection.request("GET", split.path, headers=_signed_headers(inst, cred, url))
        yield connection.getresponse()
    finally:
        connection.close()


def _wait_backend_ready(inst: Installation) -> None:
    client = inst.server.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with_error = None
        try:
            client.head_object(Bucket=inst.backend_bucket, Key=BIG[0])
            return
        except (BotoCoreError, ClientError) as exc:
            with_error = exc
        time.sleep(0.25)
    raise AssertionError(f"SeaweedFS did not come back: {with_error}\n{inst.process.log_tail()}")


def test_backend_killed_mid_sync_answers_slowdown_and_aws_cli_finishes(
    installation: Installation, tmp_path: Path
) -> None:
    inst = installation
    aws = _aws()
    c = inst.creds["sync"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_ACCESS_KEY_ID=c["access_key_id"],
        AWS_SECRET_ACCESS_KEY=c["secret_access_key"],
        AWS_SESSION_TOKEN=c["session_token"],
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
        # Standard mode backs off exponentially (capped at 20 s): 15 attempts outlast an
        # outage of several seconds plus SeaweedFS's start-up.
        AWS_RETRY_MODE="standard",
        AWS_MAX_ATTEMPTS="15",
    )
    out = tmp_path / "out"
    log = (tmp_path / "aws.log").open("wb")
    sync = subprocess.Popen(
        [
            aws, "--endpoint-url", inst.ferry.gateway_url, "s3", "sync",
            f"s3://{inst.bucket}/{PREFIX}", str(out),
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        with _get(inst, "stream", STREAMED, timeout=ANSWER_BOUND * 2) as streamed:
            assert streamed.status == 200
            first = streamed.read(MiB)
            time.sleep(1.5)
            assert sync.poll() is None, "the sync finished before the fault: nothing was tested"
            inst.process.kill()
            killed_at = time.monotonic()

            # A request while the backend is down: a quick, retryable S3 error.
            started = time.monotonic()
            with _get(inst, "probe", BIG[0], timeout=ANSWER_BOUND) as probe:
                body = probe.read().decode()
            took = time.monotonic() - started
            assert probe.status == 503, (probe.status, body)
            code = re.search(r"<Code>([^<]+)</Code>", body)
            assert code is not None and code.group(1) in ("SlowDown", "ServiceUnavailable"), body
            assert took < ANSWER_BOUND, f"the answer took {took:.1f}s"

            # The body that was streaming ends short, promptly, instead of hanging.
            rest = b""
            with pytest.raises((httpclient.IncompleteRead, ConnectionError)) as ended:
                while chunk := streamed.read(256 * 1024):
                    rest += chunk
                raise ConnectionError("body ended without an error")
            got = len(first) + len(rest) + len(getattr(ended.value, "partial", b""))
            assert got < len(inst.files[STREAMED]), "the whole body arrived after the kill"
            assert time.monotonic() - killed_at < ANSWER_BOUND * 2
            # One line in the log says why, not an ASGI traceback.
            served = inst.ferry.log()
            assert "body ended after" in served
            assert "Exception in ASGI application" not in served

        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - killed_at)))
        assert sync.poll() is None, "aws-cli gave up while the backend was down"
        inst.process.restart()
        _wait_backend_ready(inst)
        exit_code = sync.wait(timeout=120)
    finally:
        if sync.poll() is None:
            sync.kill()
            sync.wait()
        log.close()
    output = (tmp_path / "aws.log").read_text(errors="replace")
    assert exit_code == 0, output[-3000:]

    want = {k[len(PREFIX) :]: v for k, v in inst.files.items() if k.startswith(PREFIX)}
    got_files = {str(p.relative_to(out)): p for p in out.rglob("*") if p.is_file()}
    assert sorted(got_files) == sorted(want)
    for rel, path in got_files.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == hashlib.sha256(want[rel]).hexdigest(), rel
    # The gateway is itself again: a plain GET works.
    with _get(inst, "probe", BIG[1], timeout=30) as again:
        assert again.status == 200 and again.read() == inst.files[BIG[1]]


def test_a_backend_that_hangs_is_answered_503_after_one_read_timeout(
    installation: Installation,
) -> None:
    # Not dead but silent (SIGSTOP: the kernel still accepts connections): the gateway gives
    # up after [storage] timeout_seconds, once rather than once per retry, and says 503.
    inst = installation
    _wait_backend_ready(inst)
    pid = inst.process.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with _get(inst, "probe", BIG[1], timeout=ANSWER_BOUND * 2) as probe:
            body = probe.read().decode()
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert probe.status == 503, (probe.status, body)
    code = re.search(r"<Code>([^<]+)</Code>", body)
    assert code is not None and code.group(1) in ("SlowDown", "ServiceUnavailable"), body
    assert READ_TIMEOUT - 0.5 < took < READ_TIMEOUT + 2.5, f"the answer took {took:.1f}s"

    _wait_backend_ready(inst)
    with _get(inst, "probe", BIG[1], timeout=ANSWER_BOUND) as again:
        assert again.status == 200
        assert hashlib.sha256(again.read()).digest() == hashlib.sha256(inst.files[BIG[1]]).digest()
