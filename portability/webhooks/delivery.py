"""The webhook worker: announce expiries, fan events out to endpoints, deliver with retries.

Each pass, in its own transactions:

1. credentials that expired since the last pass get their `credential.expired` event (once:
   `credentials.expiry_announced_at`);
2. events not yet fanned out become one delivery per endpoint that wants them;
3. due deliveries are claimed (a lease of `lease_seconds`, so a crashed worker's claims come
   back), POSTed, and their outcome recorded: delivered on a 2xx answer, otherwise tried
   again after an exponential backoff with jitter, until `give_up_after` has passed since
   the event.

At-least-once: a worker killed after a POST and before recording it sends the event again
later, with the same `webhook-id`, which receivers use to drop the duplicate. Endpoints are
reached only through the egress policy; their answers are read up to 64 KiB and only the
status and a short error are kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Credential, Webhook, WebhookDelivery, WebhookEvent
from db.outbox import credential_event
from db.types import utcnow
from db.wakeup import Subscription
from portability.webhooks import signing
from storage.egress import EgressPolicy, EgressRefused
from storage.s3_xml import clean_message
from sts.sealing import unseal_text

log = logging.getLogger("ferry.webhooks")

PURPOSE = "webhook-secret"
ANSWER_LIMIT = 64 * 1024


@dataclass(frozen=True)
class DeliverySettings:
    backoff_base: float = 5.0  # seconds before the second attempt; doubling from there
    backoff_cap: float = 3600.0
    give_up_after: float = 24 * 3600.0
    timeout: float = 10.0
    lease_seconds: float = 60.0
    batch: int = 20
    poll_seconds: float = 2.0

    def delay(self, attempts: int) -> float:
        """Full jitter between half and all of the doubled delay: retries do not march."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempts - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class _Due:
    delivery_id: int
    event_id: str
    url: str
    secret: str
    body: bytes
    event_created: datetime
    attempts: int


class WebhookWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        master_key: bytes,
        *,
        egress: EgressPolicy,
        settings: DeliverySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        wake: Subscription | None = None,
    ) -> None:
        self.sessions = sessions
        self.master_key = master_key
        self.egress = egress
        self.settings = settings or DeliverySettings()
        self.clock = clock
        self._wake = wake or Subscription()

    async def run(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with self.egress.session(timeout=timeout, auto_decompress=False) as http:
            while not stop.is_set():
                busy = False
                try:
                    busy = await self.run_once(http)
                except Exception:
                    log.exception("webhook pass failed")
                if not busy:
                    await self._wake.wait(self.settings.poll_seconds, stop)

    async def run_once(self, http: aiohttp.ClientSession) -> bool:
        announced = await self.announce_expired()
        fanned = await self.fan_out()
        sent = await self.deliver_due(http)
        return bool(announced or fanned or sent)

    async def announce_expired(self) -> int:
        now = self.clock()
        async with self.sessions.begin() as session:
            rows = (
                await session.execute(
                    update(Credential)
                    .where(
                        Credential.kind == "user",
                        Credential.revoked_at.is_(None),
                        Credential.expires_at <= now,
                        Credential.expiry_announced_at.is_(None),
                    )
                    .values(expiry_announced_at=now)
                    .returning(Credential.access_key_id, Credential.user_id, Credential.expires_at)
                )
            ).all()
            for row in rows:
                credential_event(
                    session,
                    "credential.expired",
                    access_key_id=row.access_key_id,
                    user_id=row.user_id,
                    at=row.expires_at,
                )
        return len(rows)

    async def fan_out(self) -> int:
        now = self.clock()
        async with self.sessions.begin() as session:
            events = (
                await session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.fanned_out_at.is_(None))
                    .order_by(WebhookEvent.created_at)
                    .limit(100)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not events:
                return 0
            hooks = (await session.scalars(select(Webhook))).all()
            for event in events:
                for hook in hooks:
                    wanted = hook.all_users or hook.user_id == event.user_id
                    if wanted and event.type in hook.events:
                        session.add(
                            WebhookDelivery(
                                webhook_id=hook.id,
                                event_id=event.id,
                                created_at=now,
                                next_attempt_at=now,
                            )
                        )
                event.fanned_out_at = now
        return len(events)

    async def deliver_due(self, http: aiohttp.ClientSession) -> int:
        now = self.clock()
        due: list[_Due] = []
        async with self.sessions.begin() as session:
            rows = (
                await session.execute(
                    select(WebhookDelivery, Webhook, WebhookEvent)
                    .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                    .where(
                        WebhookDelivery.delivered_at.is_(None),
                        WebhookDelivery.gave_up_at.is_(None),
                        WebhookDelivery.next_attempt_at <= now,
                    )
                    .order_by(WebhookDelivery.next_attempt_at)
                    .limit(self.settings.batch)
                    .with_for_update(skip_locked=True, of=WebhookDelivery)
                )
            ).all()
            for delivery, hook, event in rows:
                # Claimed: anyone may take it again once the lease is over (a crash).
                delivery.next_attempt_at = now + timedelta(seconds=self.settings.lease_seconds)
                due.append(
                    _Due(
                        delivery_id=delivery.id,
                        event_id=str(event.id),
                        url=hook.url,
                        secret=unseal_text(
                            self.master_key, PURPOSE, str(hook.id), hook.secret_sealed
                        ),
                        body=json.dumps(event.payload, separators=(",", ":")).encode(),
                        event_created=event.created_at,
                        attempts=delivery.attempts,
                    )
                )
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._post(http, d) for d in due))
        async with self.sessions.begin() as session:
            for item, (status, error) in zip(due, outcomes, strict=True):
                await self._record(session, item, status, error)
        return len(due)

    async def _post(self, http: aiohttp.ClientSession, due: _Due) -> tuple[int | None, str]:
        headers = signing.headers(due.secret, due.event_id, int(time.time()), due.body)
        try:
            async with http.post(
                due.url, data=due.body, headers=headers, allow_redirects=False
            ) as answer:
                await answer.content.read(ANSWER_LIMIT)
                if 200 <= answer.status < 300:
                    return answer.status, ""
                return answer.status, f"HTTP {answer.status}"
        except EgressRefused as exc:
            return None, str(exc)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, clean_message(f"{type(exc).__name__}: {exc}")

    async def _record(
        self, session: AsyncSession, due: _Due, status: int | None, error: str
    ) -> None:
        now = self.clock()
        attempts = due.attempts + 1
        values: dict[str, object] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "last_status": status,
            "last_error": error[:300] or None,
        }
        if not error:
            values["delivered_at"] = now
        elif (now - due.event_created).total_seconds() >= self.settings.give_up_after:
            values["gave_up_at"] = now
            log.warning("webhook delivery %s given up after %d attempts", due.delivery_id, attempts)
        else:
            values["next_attempt_at"] = now + timedelta(seconds=self.settings.delay(attempts))
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == due.delivery_id).values(**values)
        )
