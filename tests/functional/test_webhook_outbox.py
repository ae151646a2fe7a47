"""The outbox side of webhooks: expiries announced once, fan-out to the endpoints that want it."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from db.engine import create_engine, session_factory
from db.models import Webhook, WebhookDelivery, WebhookEvent
from portability.accounts import create_user
from portability.buckets import create_bucket
from portability.webhooks.delivery import WebhookWorker
from storage.egress import EgressPolicy
from storage.local import LocalStorage
from sts.issue import IssueRequest, issue


async def test_an_expiry_is_announced_once_and_reaches_only_its_owners_endpoint(
    database_url: str, tmp_path: object
) -> None:
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    tag = secrets.token_hex(4)
    storage = LocalStorage(f"{tmp_path}/storage")
    now = datetime.now(UTC)
    try:
        async with sessions.begin() as session:
            owner, _ = await create_user(session, f"exp-{tag}@example.com")
            other, _ = await create_user(session, f"other-{tag}@example.com")
            bucket = await create_bucket(
                session, storage, f"exp-{tag}", owner_email=f"exp-{tag}@example.com"
            )
            issued = await issue(session, bytes(32), owner, bucket, IssueRequest(), now=now)
            for user, events in ((owner, ["credential.expired"]), (other, ["credential.expired"])):
                session.add(
                    Webhook(
                        user_id=user.id, url="https://hooks.example.net/", events=events,
                        secret_sealed=b"unused",
                    )
                )  # fmt: skip
        later = now + timedelta(hours=2)
        worker = WebhookWorker(sessions, bytes(32), egress=EgressPolicy(), clock=lambda: later)
        assert await worker.announce_expired() >= 1
        assert await worker.announce_expired() == 0  # once
        await worker.fan_out()
        async with sessions() as session:
            event = await session.scalar(
                select(WebhookEvent).where(
                    WebhookEvent.type == "credential.expired", WebhookEvent.user_id == owner.id
                )
            )
            assert event is not None
            assert event.payload["data"]["access_key_id"] == issued.credential.access_key_id
            hooks = (
                await session.scalars(
                    select(Webhook.user_id)
                    .join(WebhookDelivery, WebhookDelivery.webhook_id == Webhook.id)
                    .where(WebhookDelivery.event_id == event.id)
                )
            ).all()
            assert hooks == [owner.id]  # not the other user's endpoint
    finally:
        await engine.dispose()
