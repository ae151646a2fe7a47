"""The two targets of a load run, each seeded and driven with the same clients and mix.

`run_load`: `ferry serve` in front of SeaweedFS, one credential per client issued through the
REST API, some of them revoked at half time. `run_direct`: the peer, the same load straight
at SeaweedFS with its admin key.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import random
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.load_clients import (
    BIG_COUNT,
    BIG_SIZE,
    PREFIX,
    SMALL_COUNT,
    SMALL_SIZE,
    Sample,
    big_key,
    content,
    small_key,
)
from bench.load_drive import drive_clients
from bench.load_results import LoadResult, Revocation, summary
from bench.procfs import processes_of


def _seed(server: Any, bucket: str) -> dict[str, str]:
    s3 = server.client()
    keys = [(small_key(i), SMALL_SIZE) for i in range(SMALL_COUNT)]
    keys += [(big_key(i), BIG_SIZE) for i in range(BIG_COUNT)]

    def put(item: tuple[str, int]) -> tuple[str, str]:
        key, size = item
        body = content(key, size)
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        assert etag == hashlib.md5(body).hexdigest(), (key, etag)  # noqa: S324
        return key, etag

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return dict(pool.map(put, keys))


def _issue(ferry: Any, api_key: str, bucket: str, count: int) -> list[dict[str, str]]:
    from tests.support.ferry import http

    def one(_: int) -> dict[str, str]:
        status, answer = http(
            "POST",
            ferry.api_url + "/api/portability/credentials",
            body={"bucket": bucket, "prefixes": [PREFIX], "ttl_seconds": 7200},
            token=api_key,
        )
        assert status == 201, answer
        return {k: answer[k] for k in ("access_key_id", "secret_access_key", "session_token")}

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def _revoke(ferry: Any, api_key: str, revocations: list[Revocation]) -> None:
    from tests.support.ferry import http

    def one(r: Revocation) -> None:
        r.called_at = time.monotonic()
        try:
            status, answer = http(
                "DELETE",
                f"{ferry.api_url}/api/portability/credentials/{r.access_key_id}",
                token=api_key,
            )
        except OSError as exc:  # a timeout under load: reported, not a crashed thread
            status, answer = 0, repr(exc)
        if status == 204:  # else returned_at stays 0: counted as never refused
            r.returned_at = time.monotonic()
        else:
            print(f"revoke {r.access_key_id} failed: {status} {answer}", file=sys.stderr)

    with concurrent.futures.ThreadPoolExecutor(len(revocations) or 1) as pool:
        list(pool.map(one, revocations))


def run_direct(
    server: Any,
    *,
    clients: int = 200,
    duration: float = 60.0,
    seaweedfs_pid: int,
    rate: float | None = None,
) -> LoadResult:
    """The peer: the same clients and mix straight at SeaweedFS, all with its admin key."""
    bucket = server.new_bucket("load")
    md5s = _seed(server, bucket)
    cred = {"access_key_id": server.access_key_id, "secret_access_key": server.secret_access_key}
    drive = drive_clients(
        server.endpoint_url,
        bucket,
        [cred] * clients,
        md5s,
        duration,
        {"seaweedfs": seaweedfs_pid},
        rate=rate,
    )
    return summary(drive, clients=clients, duration=duration, target="seaweedfs", database="")


def _probe(endpoint: str, bucket: str, creds: list[dict[str, str]]) -> list[int]:
    """The status of one signed HEAD of a small object with each credential."""
    import urllib.error
    import urllib.request

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def head(cred: dict[str, str]) -> int:
        url = f"{endpoint}/{bucket}/{small_key(0)}"
        signed = AWSRequest("HEAD", url)
        key = Credentials(
            cred["access_key_id"], cred["secret_access_key"], cred.get("session_token")
        )
        S3SigV4Auth(key, "s3", "us-east-1").add_auth(signed)
        request = urllib.request.Request(url, method="HEAD", headers=dict(signed.headers))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(head, creds))


def run_load(
    server: Any,
    database_url: str,
    workdir: Path,
    *,
    clients: int = 200,
    duration: float = 60.0,
    revoke: int = 50,
    seaweedfs_pid: int | None = None,
    rate: float | None = None,
    processes: int = 1,
) -> LoadResult:
    """Seed, serve, issue, load, revoke mid-run, and measure; `server` is a running SeaweedFS.

    `processes`: `ferry serve --processes N`; CPU is summed over its processes, and the peak
    RSS and open descriptors are those of the largest one."""
    from tests.support.ferry import Ferry

    if not 0 <= revoke <= clients:
        raise ValueError("--revoke must be between 0 and --clients")
    backend_bucket = server.new_bucket("load")
    md5s = _seed(server, backend_bucket)
    ferry = Ferry.create(
        workdir / "ferry",
        database_url,
        storage_backend="s3",
        storage_endpoint_url=server.endpoint_url,
        storage_access_key_id=server.access_key_id,
        storage_secret_access_key=server.secret_access_key,
    )
    try:
        ferry.run("migrate")
        # Names of this run's own: runs may share a database (the tests' module does).
        tag = secrets.token_hex(4)
        email, bucket = f"load-{tag}@example.com", f"load-{tag}"
        owner = ferry.create_user(email)
        ferry.run("buckets", "create", bucket, "--owner", email, "--backend-bucket", backend_bucket)
        gateway = ferry.serve(*(["--processes", str(processes)] if processes > 1 else []))
        deadline = time.monotonic() + 30
        while len(processes_of(gateway.pid)) < processes + (processes > 1):
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway's processes did not start")
            time.sleep(0.1)
        creds = _issue(ferry, owner["api_key"], bucket, clients)
        chosen = sorted(random.Random(1).sample(range(clients), revoke))
        revocations = [Revocation(creds[i]["access_key_id"], i) for i in chosen]
        revoker = threading.Thread(target=_revoke, args=(ferry, owner["api_key"], revocations))
        watched = {"ferry": gateway.pid}
        if seaweedfs_pid is not None:
            watched["seaweedfs"] = seaweedfs_pid
        drive = drive_clients(
            ferry.gateway_url,
            bucket,
            creds,
            md5s,
            duration,
            watched,
            revoker if revoke else None,
            rate=rate,
        )
        # A client whose last request was still in flight at the end may have sent none after
        # its revoke: one more HEAD each shows the state the run left.
        at_end = _probe(ferry.gateway_url, bucket, creds)
    finally:
        ferry.stop()

    result = summary(
        drive,
        clients=clients,
        duration=duration,
        target="ferry",
        database=database_url.split(":", 1)[0],
        processes=processes,
    )
    by_client: dict[int, list[Sample]] = {}
    for s in drive.samples:
        by_client.setdefault(s.client, []).append(s)
    stop_at = drive.start_at + duration
    for r in revocations:
        if not r.returned_at:
            continue  # the revoke call never returned: counted as not refused
        r.time_left = stop_at - r.returned_at
        mine = sorted(by_client.get(r.client, []), key=lambda s: s.started)
        served_late = [
            s.started - r.returned_at
            for s in mine
            if s.started > r.returned_at and 200 <= s.status < 300
        ]
        r.last_served_sent_after = max(served_late, default=0.0)
        refusals = [s for s in mine if s.status == 403]
        if refusals:
            # The first 403 received: in an open loop, not always the first one sent.
            first = min(refusals, key=lambda s: s.ended)
            r.refused_after = first.ended - r.returned_at
            r.served_after_refusal = sum(
                1 for s in mine if s.started > first.ended and 200 <= s.status < 300
            )
    revoked_clients = {r.client for r in revocations}
    for r in revocations:
        r.refused_at_end = at_end[r.client] == 403
    result.not_revoked_refused_at_end = sum(
        1 for i, status in enumerate(at_end) if i not in revoked_clients and status != 200
    )
    result.revoked = revoke
    result.revocations = revocations
    result.max_revocation_s = max(
        (r.refused_after if r.refused_after is not None else float("inf") for r in revocations),
        default=0.0,
    )
    result.max_served_after_revoke_s = max(
        (r.last_served_sent_after for r in revocations), default=0.0
    )
    result.refused_not_revoked = sum(
        1 for s in drive.samples if s.status == 403 and s.client not in revoked_clients
    )
    return result
