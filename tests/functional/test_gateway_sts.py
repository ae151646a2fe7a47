"""STS on the gateway: AssumeRole and GetSessionToken, signed by botocore for service sts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from sqlalchemy import select

from db.models import Bucket, User
from sts.issue import IssueRequest, issue, revoke
from tests.support.gateway_world import BASE, Key, World, error_code, open_world

NS = "{https://sts.amazonaws.com/doc/2011-06-15/}"


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(database_url, tmp_path_factory.mktemp("sts") / "storage") as w:
        yield w


def parent(world: World, name: str) -> str:
    """A fresh token-free credential on share/ (each test revokes or spoils its own)."""

    async def mint() -> None:
        async with world.sessions.begin() as session:
            user = await session.scalar(select(User).where(User.email == world.owner_email))
            bucket = await session.scalar(select(Bucket).where(Bucket.name == "alice-data"))
            assert user is not None and bucket is not None
            request = IssueRequest(prefixes=("share/",), session_token=False)
            issued = await issue(
                session, world.master_key, user, bucket, request, now=world.clock[0]
            )
            world.keys[name] = Key(issued.credential.access_key_id, issued.secret, None)

    world.client.portal.call(mint)  # type: ignore[union-attr]
    return name


def sts(world: World, key: str, **form: str) -> Any:
    k = world.keys[key]
    body = urlencode({"Version": "2011-06-15", **form})
    request = AWSRequest(
        method="POST",
        url=BASE + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(k.access_key_id, k.secret, k.token), "sts", "us-east-1").add_auth(request)
    return world.client.post("/", content=body, headers=dict(request.headers.items()))


def session_key(world: World, answer: Any, name: str) -> None:
    root = ET.fromstring(answer.content)
    creds = root.find(f".//{NS}Credentials")
    assert creds is not None, answer.text
    world.keys[name] = Key(
        creds.findtext(f"{NS}AccessKeyId") or "",
        creds.findtext(f"{NS}SecretAccessKey") or "",
        creds.findtext(f"{NS}SessionToken"),
    )


def sts_error(answer: Any) -> str | None:
    return ET.fromstring(answer.content).findtext(f".//{NS}Code")


def test_assume_role_mints_a_narrower_session_that_dies_with_its_parent(world: World) -> None:
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject"],
                    "Resource": ["arn:aws:s3:::alice-data/share/photos/2024/*"],
                }
            ],
        }
    )
    answer = sts(
        world,
        parent(world, "p1"),
        Action="AssumeRole",
        RoleArn="arn:aws:iam::000000000000:role/migration",
        RoleSessionName="move-2024",
        DurationSeconds="43200",
        Policy=policy,
    )
    assert answer.status_code == 200, answer.text
    root = ET.fromstring(answer.content)
    expiration = root.findtext(f".//{NS}Expiration")
    assert expiration is not None
    assert root.findtext(f".//{NS}Arn", "").endswith("assumed-role/migration/move-2024")
    session_key(world, answer, "session")
    assert world.request("/alice-data/share/photos/2024/p3.jpg", "session").status_code == 200
    refused = world.request("/alice-data/share/photos/p2.jpg", "session")
    assert refused.status_code == 403  # outside the policy, inside the parent
    no_token = world.request("/alice-data/share/photos/2024/p3.jpg", "session", token=False)
    assert error_code(no_token) == "InvalidToken"

    async def revoke_parent() -> None:
        async with world.sessions.begin() as session:
            await revoke(session, world.keys["p1"].access_key_id, now=world.clock[0])

    world.client.portal.call(revoke_parent)  # type: ignore[union-attr]
    gone = world.request("/alice-data/share/photos/2024/p3.jpg", "session")
    assert error_code(gone) == "InvalidAccessKeyId"


def test_get_session_token_and_refusals(world: World) -> None:
    parent(world, "p2")
    answer = sts(world, "p2", Action="GetSessionToken", DurationSeconds="900")
    assert answer.status_code == 200, answer.text
    session_key(world, answer, "plain")
    assert world.request("/alice-data/share/a.txt", "plain").status_code == 200

    with_token = sts(world, "photos", Action="GetSessionToken")
    assert with_token.status_code == 403 and sts_error(with_token) == "AccessDenied"
    widen = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}],
        }
    )
    bad = sts(
        world, "tokenless", Action="AssumeRole", RoleArn="r", RoleSessionName="xx", Policy=widen
    )
    assert bad.status_code == 400 and sts_error(bad) == "MalformedPolicyDocument"
    short = sts(world, "p2", Action="GetSessionToken", DurationSeconds="60")
    assert sts_error(short) == "ValidationError"
    unknown = sts(world, "p2", Action="GetFederationToken")
    assert sts_error(unknown) == "InvalidAction"
    world.keys["p2"].secret = "wrong" * 8
    forged = sts(world, "p2", Action="GetSessionToken")
    assert forged.status_code == 403 and sts_error(forged) == "SignatureDoesNotMatch"


def test_a_session_never_outlives_its_parent(world: World) -> None:
    answer = sts(world, parent(world, "p3"), Action="GetSessionToken", DurationSeconds="43200")
    assert answer.status_code == 200
    expiration = ET.fromstring(answer.content).findtext(f".//{NS}Expiration") or ""
    # The parent was issued for an hour (the default): the session ends with it.
    limit = (world.clock[0] + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert expiration <= limit
