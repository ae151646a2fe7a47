"""Session credentials: narrower than their parent, never outliving it, dying with it."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from db.engine import create_engine, session_factory
from db.models import Credential
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.local import LocalStorage
from sts.exceptions import InvalidRequest
from sts.issue import IssueRequest, issue, revoke
from sts.policy import MalformedPolicyDocument
from sts.session import mint_session


async def test_sessions_narrow_clip_and_die_with_their_parent(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    tag = secrets.token_hex(4)
    now = datetime.now(UTC)
    try:
        async with sessions.begin() as session:
            user, _ = await create_user(session, f"sts-{tag}@example.com")
            bucket = await create_bucket(
                session, LocalStorage(tmp_path), f"sts-{tag}", owner_email=user.email
            )
            parent = (
                await issue(
                    session,
                    bytes(32),
                    user,
                    bucket,
                    IssueRequest(prefixes=("share/",), ttl_seconds=1800, session_token=False),
                    now=now,
                )
            ).credential
            with_token = (
                await issue(session, bytes(32), user, bucket, IssueRequest(), now=now)
            ).credential
            policy = json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": "s3:GetObject",
                            "Resource": f"arn:aws:s3:::{bucket.name}/share/2024/*",
                        }
                    ],
                }
            )
            child = await mint_session(
                session, bytes(32), parent, bucket, now=now, duration_seconds=43_200, policy=policy
            )
            assert child.credential.prefixes == ["share/2024/"]
            assert child.credential.expires_at == parent.expires_at  # clipped to the parent's
            assert child.session_token and child.credential.parent_id == parent.id
            with pytest.raises(InvalidRequest, match="token-free"):
                await mint_session(session, bytes(32), with_token, bucket, now=now)
            with pytest.raises(InvalidRequest, match="DurationSeconds"):
                await mint_session(session, bytes(32), parent, bucket, now=now, duration_seconds=60)
            elsewhere = policy.replace("share/2024/", "private/")
            with pytest.raises(MalformedPolicyDocument, match="nothing"):
                await mint_session(session, bytes(32), parent, bucket, now=now, policy=elsewhere)
        async with sessions.begin() as session:
            await revoke(session, parent.access_key_id, now=now + timedelta(seconds=1))
        async with sessions() as session:
            reloaded = await session.get(Credential, child.credential.id)
            assert reloaded is not None and reloaded.revoked_at is not None
    finally:
        await engine.dispose()
