"""Rotation without a gap: the new secret works at once, the old one until its grace ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.support.ferry import Ferry, http, served_demo


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    with served_demo(tmp_path_factory.mktemp("rotation"), database_url) as ferry:
        yield ferry


def s3(ferry: Ferry, key_id: str, secret: str, token: str | None = None) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=ferry.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=BotoConfig(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


def works(client: Any) -> bool:
    try:
        client.list_objects_v2(Bucket="alice-data", MaxKeys=1)
        return True
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "SignatureDoesNotMatch", exc.response
        return False


@pytest.mark.parametrize("session_token", [False, True])
def test_the_old_secret_works_for_the_grace_period_and_the_new_one_at_once(
    served: Ferry, session_token: bool
) -> None:
    key = served.demo_key("alice@example.com")
    status, cred = http(
        "POST",
        served.api_url + "/api/portability/credentials",
        body={"bucket": "alice-data", "session_token": session_token},
        token=key,
    )
    assert status == 201
    token = cred["session_token"]
    old = s3(served, cred["access_key_id"], cred["secret_access_key"], token)
    assert works(old)  # cached by the gateway now
    status, rotated = http(
        "POST",
        f"{served.api_url}/api/portability/credentials/{cred['access_key_id']}/rotate",
        body={"grace_seconds": 3},
        token=key,
    )
    assert status == 200, rotated
    assert rotated["access_key_id"] == cred["access_key_id"]
    assert rotated["secret_access_key"] != cred["secret_access_key"]
    rotated_at = time.monotonic()
    new = s3(served, cred["access_key_id"], rotated["secret_access_key"], token)
    assert works(new)  # at once, whatever the gateway had cached
    assert works(old)  # still inside the grace period
    while time.monotonic() - rotated_at < 4.5:
        time.sleep(0.25)
    assert not works(old)
    assert works(new)


def test_rotation_is_refused_for_a_revoked_credential_and_a_bad_grace(served: Ferry) -> None:
    key = served.demo_key("alice@example.com")
    _, cred = http(
        "POST",
        served.api_url + "/api/portability/credentials",
        body={"bucket": "alice-data"},
        token=key,
    )
    url = f"{served.api_url}/api/portability/credentials/{cred['access_key_id']}"
    status, answer = http("POST", url + "/rotate", body={"grace_seconds": -1}, token=key)
    assert status == 422 and "grace_seconds" in answer["error"]["message"]
    assert http("DELETE", url, token=key)[0] == 204
    status, answer = http("POST", url + "/rotate", token=key)
    assert status == 422 and "revoked" in answer["error"]["message"]
    other = served.demo_key("bob@example.com")
    status, _ = http("POST", url + "/rotate", token=other)
    assert status == 404  # someone else's credential: not found, as for revoke
