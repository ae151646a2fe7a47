"""Import requests: the hand-off document, the body's checks, sealed secrets, the egress rule."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Bucket, User
from db.types import utcnow
from portability.contract.base import Refused, parse
from portability.contract.imports import ImportRequest
from portability.imports.handoff import build_handoff, source_from_handoff
from portability.imports.service import create_import_request, open_source, public_source
from storage.egress import EgressPolicy, EgressRefused
from sts.exceptions import InvalidRequest
from tests.support.egress import LOOPBACK

SECRET = "s3cr3t-" + "x" * 33
TOKEN = "t0k3n-" + "y" * 40
ANSWER: dict[str, Any] = {
    "endpoint_url": "http://127.0.0.1:9000",
    "region": "eu-west-1",
    "bucket": "photos",
    "prefixes": ["2024/"],
    "access_key_id": "FKIAEXAMPLE000000001",
    "secret_access_key": SECRET,
    "session_token": TOKEN,
    "expires_at": "2026-12-05T10:00:00Z",
}


def test_a_handoff_document_stands_for_the_source_fields() -> None:
    document = build_handoff(ANSWER, manifest_url="http://127.0.0.1:9000/m?X-Amz-Signature=1")
    assert document["format"] == "ferry-handoff" and document["version"] == 1
    given = source_from_handoff(json.loads(json.dumps(document)))
    assert given["manifest_url"] == document["manifest_url"]
    assert given["source"] == {
        "endpoint_url": "http://127.0.0.1:9000",
        "region": "eu-west-1",
        "addressing_style": "path",
        "bucket": "photos",
        "prefix": "2024/",
        "access_key_id": "FKIAEXAMPLE000000001",
        "secret_access_key": SECRET,
        "session_token": TOKEN,
    }


@pytest.mark.parametrize(
    ("document", "prefix", "message"),
    [
        ([], None, "handoff must be a JSON object"),
        ({**build_handoff(ANSWER), "format": "other"}, None, "not a ferry-handoff"),
        ({**build_handoff(ANSWER), "extra": 1}, None, "unknown handoff field(s): extra"),
        ({**build_handoff(ANSWER), "prefixes": []}, None, "non-empty list"),
        ({**build_handoff(ANSWER), "prefixes": ["a/", "b/"]}, None, "several prefixes"),
        (build_handoff(ANSWER), "2023/", "outside the hand-off's prefixes"),
        ({**build_handoff(ANSWER), "manifest_url": 7}, None, "manifest_url"),
    ],
)
def test_a_bad_handoff_is_refused_with_its_reason(
    document: Any, prefix: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        source_from_handoff(document, prefix=prefix)


async def _alice(session: AsyncSession) -> User:
    user = User(id=uuid.uuid4(), email=f"alice-{uuid.uuid4().hex[:8]}@example.org")
    session.add(user)
    await session.flush()
    for name in ("inbox", "archive"):
        session.add(
            Bucket(
                id=uuid.uuid4(),
                name=f"{name}-{uuid.uuid4().hex[:8]}",
                owner_id=user.id,
                backend_bucket="backend",
                backend_prefix=f"{user.id}/{name}/",
            )
        )
    await session.flush()
    return user


async def _own_bucket(session: AsyncSession, user: User) -> str:
    from sqlalchemy import select

    names = await session.scalars(select(Bucket.name).where(Bucket.owner_id == user.id))
    return sorted(names.all())[0]


async def test_an_import_seals_its_secrets_and_shows_only_the_public_source(
    db_session: AsyncSession,
) -> None:
    user = await _alice(db_session)
    bucket = await _own_bucket(db_session, user)
    manifest = "http://127.0.0.1:9000/ferry-exports/m.json?X-Amz-Signature=abc"
    body = {
        "handoff": build_handoff(ANSWER, manifest_url=manifest),
        "target": {"bucket": bucket, "prefix": "old/"},
        "on_conflict": "skip_identical",
    }
    request = await create_import_request(
        db_session, b"k" * 32, user, body, now=utcnow(), egress=LOOPBACK
    )
    assert request.request_type == "import" and request.status == "pending"
    stored = request.transfer_destination or ""
    for secret in (SECRET, TOKEN, "X-Amz-Signature"):
        assert secret not in stored and secret not in json.dumps(request.meta)
    options = (request.meta or {})["options"]
    assert options["target"] == {"bucket": bucket, "prefix": "old/"}
    assert options["on_conflict"] == "skip_identical" and options["manifest"] and options["handoff"]
    assert public_source(request) == options["source"]
    opened = open_source(b"k" * 32, request)
    assert (opened["secret_access_key"], opened["session_token"]) == (SECRET, TOKEN)
    assert opened["manifest_url"] == manifest and opened["prefix"] == "2024/"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": {"bucket": "someone-elses"}}, "no bucket 'someone-elses' of yours"),
        ({"target": {}}, "target.bucket is required"),
        ({"on_conflict": "merge"}, "on_conflict must be one of"),
        ({"source": {}}, "send either source or handoff"),
        ({"handoff": None, "source": {"endpoint_url": "ftp://x", "bucket": "b"}}, "http"),
        ({"manifest_url": "file:///etc/passwd"}, "manifest_url must be an http"),
        ({"source_prefix": 3}, "source_prefix must be a string"),
        ({"surprise": True}, "unknown field"),
    ],
)
async def test_a_bad_import_body_is_refused_with_its_reason(
    db_session: AsyncSession, change: dict[str, Any], message: str
) -> None:
    user = await _alice(db_session)
    body: dict[str, Any] = {"handoff": build_handoff(ANSWER), "target": {}, **change}
    if "handoff" in change and change["handoff"] is None:
        del body["handoff"]
    if body["target"] == {} and "target" not in change:
        body["target"] = {"bucket": await _own_bucket(db_session, user)}
    with pytest.raises(InvalidRequest, match=message):
        await create_import_request(
            db_session, b"k" * 32, user, body, now=utcnow(), egress=LOOPBACK
        )


async def test_the_default_egress_policy_refuses_a_loopback_source(
    db_session: AsyncSession,
) -> None:
    user = await _alice(db_session)
    body = {
        "handoff": build_handoff(ANSWER),
        "target": {"bucket": await _own_bucket(db_session, user)},
    }
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
        await create_import_request(
            db_session, b"k" * 32, user, body, now=utcnow(), egress=EgressPolicy()
        )


@pytest.mark.parametrize(
    "body",
    [
        {"handoff": None, "target": {"bucket": "b"}},
        {"source": None, "handoff": None, "target": {"bucket": "b"}},
        {"target": {"bucket": "b"}},
    ],
)
def test_null_is_no_source(body: dict[str, Any]) -> None:
    """Found by schemathesis: a body with `handoff: null` and no source was a 500."""
    with pytest.raises(Refused, match="send either source or handoff"):
        parse(ImportRequest, body)
