"""Real clients pull a scoped prefix through a real `ferry serve`, byte-identical to the source.

The gateway runs in front of the local backend and in front of SeaweedFS; aws-cli v2
(Debian) and v1 (PyPI), rclone, s5cmd, s3cmd and boto3 pull with a session-token credential
and with a token-free one, and a presigned URL is fetched with curl.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from tests.fixtures.servers import S3Server
from tests.support.ferry import Ferry, http
from tests.support.pull_clients import (
    BIG,
    BIN,
    EDGE,
    OUTSIDE,
    PREFIX,
    TRICKY,
    MiB,
    Pull,
    dataset,
    ranged_gets_of,
    run,
    seed_local,
    tool,
)


@pytest.fixture(scope="module", params=["local", "seaweedfs"])
def pull(
    request: pytest.FixtureRequest, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pull]:
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"pull-{backend}")
    big = workdir / "big.bin"
    with big.open("wb") as f:
        for _ in range(100):
            f.write(os.urandom(MiB))
    big_sha = hashlib.sha256(big.read_bytes()).hexdigest()
    files = dataset()

    settings: dict[str, str] = {}
    if backend == "seaweedfs":
        server: S3Server = request.getfixturevalue("seaweedfs")
        backend_bucket = server.new_bucket("pull")
        settings = {
            "storage_backend": "s3",
            "storage_endpoint_url": server.endpoint_url,
            "storage_access_key_id": server.access_key_id,
            "storage_secret_access_key": server.secret_access_key,
        }
        s3 = server.client()
        for key, data in files.items():
            s3.put_object(Bucket=backend_bucket, Key=key, Body=data)
        s3.upload_file(str(big), backend_bucket, BIG)
    else:
        backend_bucket = "pull-local"

    ferry = Ferry.create(workdir / "ferry", database_url, **settings)
    if backend == "local":
        seed = {**files, **EDGE}
        asyncio.run(seed_local(workdir / "ferry" / "storage", backend_bucket, seed, big))
    email = f"alice-{backend}@example.com"
    alice = ferry.create_user(email)
    bucket = f"alice-{backend}"
    ferry.run("buckets", "create", bucket, "--owner", email, "--backend-bucket", backend_bucket)
    ferry.serve()
    try:
        creds = []
        for token in (True, False):
            status, answer = http(
                "POST",
                ferry.api_url + "/api/portability/credentials",
                body={"bucket": f"alice-{backend}", "prefixes": [PREFIX], "session_token": token},
                token=alice["api_key"],
            )
            assert status == 201, answer
            creds.append(answer)
        yield Pull(ferry, files, big_sha, creds[0], creds[1], backend, alice["api_key"])
    finally:
        ferry.stop()


@pytest.mark.parametrize("cli", ["v2", "v1"])
def test_aws_s3_sync(pull: Pull, tmp_path: Path, cli: str) -> None:
    aws = tool("aws", "/usr/bin/aws") if cli == "v2" else str(BIN / "aws")
    version = run([aws, "--version"], os.environ.copy())
    assert version.startswith("aws-cli/2" if cli == "v2" else "aws-cli/1"), version
    env = pull.env(pull.token_cred, tmp_path)
    out = tmp_path / "out"
    run(
        [
            aws,
            "--endpoint-url",
            pull.ferry.gateway_url,
            "s3",
            "sync",
            f"s3://{pull.bucket}/{PREFIX}",
            str(out),
        ],
        env,
    )
    pull.check_tree(out, PREFIX, big=True)
    time.sleep(0.6)  # the audit writer flushes in batches
    assert ranged_gets_of(pull, BIG, pull.token_cred["access_key_id"]) >= 2
    # The user sees what went through: whole objects fetched and bytes served.
    status, answer = http(
        "GET", pull.ferry.api_url + "/api/portability/credentials", token=pull.api_key
    )
    assert status == 200
    mine = next(
        c for c in answer["credentials"] if c["access_key_id"] == pull.token_cred["access_key_id"]
    )
    small_objects = len(pull.expected(PREFIX))
    assert mine["pulled"]["objects"] >= small_objects
    assert mine["pulled"]["bytes"] >= sum(map(len, pull.expected(PREFIX).values())) + 100 * MiB
    assert mine["last_used_at"] is not None

    # Token-free: the same with nothing but a key id and a secret.
    env = pull.env(pull.tokenless_cred, tmp_path)
    small = tmp_path / "small"
    run(
        [
            aws,
            "--endpoint-url",
            pull.ferry.gateway_url,
            "s3",
            "sync",
            f"s3://{pull.bucket}/pull/small/",
            str(small),
        ],
        env,
    )
    pull.check_tree(small, "pull/small/", big=False)


@pytest.mark.parametrize("list_version", ["1", "2"])
def test_rclone_copy_and_check(pull: Pull, tmp_path: Path, list_version: str) -> None:
    rclone = tool("rclone")
    for cred, prefix, big in [
        (pull.token_cred, PREFIX, True),
        (pull.tokenless_cred, "pull/small/", False),
    ]:
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(
            {
                "HOME": str(tmp_path),
                "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
                "RCLONE_CONFIG_FERRY_TYPE": "s3",
                "RCLONE_CONFIG_FERRY_PROVIDER": "Other",
                "RCLONE_CONFIG_FERRY_ENDPOINT": pull.ferry.gateway_url,
                "RCLONE_CONFIG_FERRY_REGION": "us-east-1",
                "RCLONE_CONFIG_FERRY_ACCESS_KEY_ID": cred["access_key_id"],
                "RCLONE_CONFIG_FERRY_SECRET_ACCESS_KEY": cred["secret_access_key"],
                "RCLONE_CONFIG_FERRY_LIST_VERSION": list_version,
                "RCLONE_CONFIG_FERRY_NO_CHECK_BUCKET": "true",
            }
        )
        if cred["session_token"]:
            env["RCLONE_CONFIG_FERRY_SESSION_TOKEN"] = cred["session_token"]
        out = tmp_path / f"out-{cred['access_key_id']}"
        run([rclone, "copy", f"ferry:{pull.bucket}/{prefix}", str(out)], env)
        run([rclone, "check", f"ferry:{pull.bucket}/{prefix}", str(out)], env)
        pull.check_tree(out, prefix, big=big)


def test_s5cmd(pull: Pull, tmp_path: Path) -> None:
    s5cmd = tool("s5cmd")
    for cred, prefix, big in [
        (pull.token_cred, PREFIX, True),
        (pull.tokenless_cred, "pull/small/", False),
    ]:
        out = tmp_path / f"out-{cred['access_key_id']}"
        run(
            [
                s5cmd,
                "--endpoint-url",
                pull.ferry.gateway_url,
                "cp",
                f"s3://{pull.bucket}/{prefix}*",
                f"{out}/",
            ],
            pull.env(cred, tmp_path),
        )
        pull.check_tree(out, prefix, big=big)


@pytest.mark.parametrize("signature_v2", [False, True], ids=["sigv4", "sigv2"])
def test_s3cmd(pull: Pull, tmp_path: Path, signature_v2: bool) -> None:
    s3cmd = tool("s3cmd", "/usr/bin/s3cmd")
    host = pull.ferry.gateway_url.removeprefix("http://")
    for cred, prefix, big in [
        (pull.token_cred, PREFIX, True),
        (pull.tokenless_cred, "pull/small/", False),
    ]:
        config = tmp_path / "s3cfg"
        lines = [
            "[default]",
            f"access_key = {cred['access_key_id']}",
            f"secret_key = {cred['secret_access_key']}",
            f"host_base = {host}",
            f"host_bucket = {host}",  # path style
            "use_https = False",
            f"signature_v2 = {signature_v2}",
            "bucket_location = us-east-1",
        ]
        if cred["session_token"]:
            lines.append(f"access_token = {cred['session_token']}")
        config.write_text("\n".join(lines) + "\n")
        out = tmp_path / f"out-{cred['access_key_id']}"
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        run(
            [
                s3cmd,
                "-c",
                str(config),
                "get",
                "--recursive",
                f"s3://{pull.bucket}/{prefix}",
                f"{out}/",
            ],
            env,
        )
        pull.check_tree(out, prefix, big=big)


def _boto3(pull: Pull, cred: dict[str, Any]) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=pull.ferry.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=cred["access_key_id"],
        aws_secret_access_key=cred["secret_access_key"],
        aws_session_token=cred["session_token"],
        # SigV4 throughout, presigned URLs too (test_boto3_default_presigned_urls takes
        # boto3's default, SigV2 presigned URLs).
        config=BotoConfig(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 2}
        ),
    )


def test_boto3_paginator_and_download(pull: Pull, tmp_path: Path) -> None:
    for cred in (pull.token_cred, pull.tokenless_cred):
        s3 = _boto3(pull, cred)
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=pull.bucket, Prefix=PREFIX, PaginationConfig={"PageSize": 37}
            )
            for o in page.get("Contents", [])
        ]
        want = sorted([k for k in pull.files if k.startswith(PREFIX)] + [BIG])
        assert sorted(keys) == want
        assert len(keys) == len(set(keys))
    s3 = _boto3(pull, pull.token_cred)
    for key in TRICKY:
        target = tmp_path / hashlib.md5(key.encode()).hexdigest()  # noqa: S324 - a file name
        s3.download_file(pull.bucket, key, str(target))
        assert target.read_bytes() == pull.files[key]
    target = tmp_path / "big.bin"
    s3.download_file(pull.bucket, BIG, str(target))
    assert hashlib.sha256(target.read_bytes()).hexdigest() == pull.big_sha256
    # The outside stays outside, whatever the client asks. "pul" names a folder above the
    # scope: it is "no such key" (rclone probes such names), never the object's bytes.
    for key in OUTSIDE:
        with pytest.raises(s3.exceptions.ClientError) as info:
            s3.get_object(Bucket=pull.bucket, Key=key)
        expected = "NoSuchKey" if PREFIX.startswith(key) else "AccessDenied"
        assert info.value.response["Error"]["Code"] == expected


def test_presigned_url_with_curl(pull: Pull, tmp_path: Path) -> None:
    curl = tool("curl")
    for cred in (pull.token_cred, pull.tokenless_cred):
        s3 = _boto3(pull, cred)
        url = s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": pull.bucket, "Key": "pull/unicodé/日本語.txt"},
            ExpiresIn=600,
        )
        body = subprocess.run([curl, "-sf", url], capture_output=True, check=True).stdout
        assert body == pull.files["pull/unicodé/日本語.txt"]
    url = _boto3(pull, pull.token_cred).generate_presigned_url(
        "get_object", Params={"Bucket": pull.bucket, "Key": BIG}, ExpiresIn=600
    )
    part = subprocess.run(
        [curl, "-sf", "-r", "1000-1999", url], capture_output=True, check=True
    ).stdout
    assert len(part) == 1000
    s3 = _boto3(pull, pull.token_cred)
    whole_range = s3.get_object(Bucket=pull.bucket, Key=BIG, Range="bytes=1000-1999")["Body"].read()
    assert part == whole_range


def test_boto3_default_presigned_urls(pull: Pull) -> None:
    """boto3 with its defaults (us-east-1, no signature_version) presigns with SigV2:
    AWSAccessKeyId, Signature, Expires, and x-amz-security-token for a session credential."""
    curl = tool("curl")
    for cred in (pull.token_cred, pull.tokenless_cred):
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=pull.ferry.gateway_url,
            region_name="us-east-1",
            aws_access_key_id=cred["access_key_id"],
            aws_secret_access_key=cred["secret_access_key"],
            aws_session_token=cred["session_token"],
        )
        for key in [*TRICKY, "pull/small/0.txt"]:
            # Within the credential's life: a URL that would outlive it is refused.
            url = s3.generate_presigned_url(
                "get_object", Params={"Bucket": pull.bucket, "Key": key}, ExpiresIn=600
            )
            assert "AWSAccessKeyId=" in url and "X-Amz-Signature" not in url
            assert ("x-amz-security-token=" in url) == bool(cred["session_token"])
            body = subprocess.run([curl, "-sf", url], capture_output=True, check=True).stdout
            assert body == pull.files[key], key
    url = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": pull.bucket,
            "Key": BIG,
            "ResponseContentDisposition": 'attachment; filename="big.bin"',
        },
        ExpiresIn=600,
    )
    big = subprocess.run([curl, "-sfD", "-", "-o", "/dev/null", url], capture_output=True)
    assert big.returncode == 0 and b'filename="big.bin"' in big.stdout
    whole = subprocess.run([curl, "-sf", url], capture_output=True, check=True).stdout
    assert hashlib.sha256(whole).hexdigest() == pull.big_sha256
    part = subprocess.run([curl, "-sf", "-r", "1000-1999", url], capture_output=True, check=True)
    assert part.stdout == whole[1000:2000]


# SeaweedFS cannot store these keys at all: only the local backend serves them.
@pytest.mark.parametrize("pull", ["local"], indirect=True)
def test_empty_segments_and_folder_markers(pull: Pull, tmp_path: Path) -> None:
    status, cred = http(
        "POST",
        pull.ferry.api_url + "/api/portability/credentials",
        body={"bucket": pull.bucket, "prefixes": ["edge/"]},
        token=pull.api_key,
    )
    assert status == 201, cred
    s3 = _boto3(pull, cred)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=pull.bucket, Prefix="edge/")["Contents"]]
    assert listed == sorted(EDGE)  # every key exactly, in UTF-8 byte order
    for key, data in EDGE.items():
        assert s3.get_object(Bucket=pull.bucket, Key=key)["Body"].read() == data
    # aws-cli maps empty segments away and skips the folder marker; every byte still arrives.
    out = tmp_path / "out"
    run(
        [
            tool("aws", "/usr/bin/aws"),
            "--endpoint-url",
            pull.ferry.gateway_url,
            "s3",
            "sync",
            f"s3://{pull.bucket}/edge/",
            str(out),
        ],
        pull.env(cred, tmp_path),
    )
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {
        "a/b.txt": EDGE["edge/a//b.txt"],
        "lead.txt": EDGE["edge//lead.txt"],
        "dir/in.txt": EDGE["edge/dir/in.txt"],
    }
