"""STS with the real aws-cli v2: assume-role and get-session-token against the gateway, then
`aws s3` with the session credentials; a session policy narrows; revoking the parent
refuses the session within a second."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.ferry import Ferry, http, served_demo

AWS = shutil.which("aws", path="/usr/bin") or ""


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    if not AWS:
        if os.environ.get("CI") == "true":
            pytest.fail("aws-cli v2 (Debian's awscli) is missing")
        pytest.skip("aws-cli v2 (Debian's awscli) is not installed")
    with served_demo(tmp_path_factory.mktemp("sts"), database_url) as ferry:
        yield ferry


def aws(ferry: Ferry, tmp: Path, cred: dict[str, Any], *args: str, check: bool = True) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=cred["AccessKeyId"],
        AWS_SECRET_ACCESS_KEY=cred["SecretAccessKey"],
        AWS_DEFAULT_REGION="us-east-1",
        HOME=str(tmp),
    )
    if cred.get("SessionToken"):
        env["AWS_SESSION_TOKEN"] = cred["SessionToken"]
    result = subprocess.run(
        [AWS, "--endpoint-url", ferry.gateway_url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def migration_key(ferry: Ferry) -> dict[str, Any]:
    status, cred = http(
        "POST",
        ferry.api_url + "/api/portability/credentials",
        body={"bucket": "alice-data", "prefixes": ["photos/"], "session_token": False},
        token=ferry.demo_key("alice@example.com"),
    )
    assert status == 201, cred
    return {"AccessKeyId": cred["access_key_id"], "SecretAccessKey": cred["secret_access_key"]}


def test_assume_role_then_sync_with_a_narrowing_policy(served: Ferry, tmp_path: Path) -> None:
    parent = migration_key(served)
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::alice-data/photos/2024/*",
                },
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": "arn:aws:s3:::alice-data",
                    "Condition": {"StringLike": {"s3:prefix": "photos/2024/*"}},
                },
            ],
        }
    )
    answer = aws(
        served, tmp_path, parent, "sts", "assume-role",
        "--role-arn", "arn:aws:iam::000000000000:role/migration",
        "--role-session-name", "move-2024", "--duration-seconds", "900", "--policy", policy,
    )  # fmt: skip
    session = json.loads(answer.stdout)["Credentials"]
    assert session["SessionToken"]
    out = tmp_path / "out"
    aws(served, tmp_path, session, "s3", "sync", "s3://alice-data/photos/2024/", str(out))
    synced = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert synced and all(name.startswith("IMG_") for name in synced)
    other = aws(
        served, tmp_path, session, "s3", "cp", "s3://alice-data/photos/2023/IMG_0003.jpg", "-",
        check=False,
    )  # fmt: skip
    assert other.returncode != 0 and "(403)" in other.stderr  # a HEAD: no error body

    # Revoking the parent refuses the session within a second.
    status, _ = http(
        "DELETE",
        f"{served.api_url}/api/portability/credentials/{parent['AccessKeyId']}",
        token=served.demo_key("alice@example.com"),
    )
    assert status == 204
    time.sleep(1.0)
    after = aws(served, tmp_path, session, "s3", "ls", "s3://alice-data/photos/2024/", check=False)
    assert after.returncode != 0 and "InvalidAccessKeyId" in after.stderr


def test_get_session_token_never_outlives_its_parent(served: Ferry, tmp_path: Path) -> None:
    parent = migration_key(served)
    answer = aws(
        served, tmp_path, parent, "sts", "get-session-token", "--duration-seconds", "43200"
    )
    session = json.loads(answer.stdout)["Credentials"]
    aws(served, tmp_path, session, "s3", "ls", "s3://alice-data/photos/")
    status, listed = http(
        "GET",
        served.api_url + "/api/portability/credentials",
        token=served.demo_key("alice@example.com"),
    )
    assert status == 200
    rows = {c["access_key_id"]: c for c in listed["credentials"]}
    child = rows[session["AccessKeyId"]]
    assert child["kind"] == "session"
    assert child["parent_access_key_id"] == parent["AccessKeyId"]
    assert child["expires_at"] == rows[parent["AccessKeyId"]]["expires_at"]  # clipped
