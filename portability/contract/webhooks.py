"""Webhooks: registering an endpoint, and what endpoints and deliveries look like."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import Field, field_validator

from db.outbox import EVENTS
from portability.contract.base import Answer, Body, Says, refuse
from portability.webhooks.service import URL_MAX

# The outbox's list of events, as the document shows it; `_known_events` enforces it.
Event = Annotated[str, Field(json_schema_extra={"enum": list(EVENTS)})]


class NewWebhook(Body):
    url: Annotated[
        str,
        Says(f"url is required: an http(s) URL of at most {URL_MAX} characters"),
        Field(min_length=1, max_length=URL_MAX, description="http(s) endpoint"),
    ]
    events: Annotated[
        list[Event],
        Says(f"events must be a non-empty list of {', '.join(EVENTS)}"),
        Field(min_length=1, description="Default: all of them."),
    ] = Field(default_factory=lambda: list(EVENTS))
    all_users: Annotated[
        bool,
        Says("all_users must be true or false"),
        Field(description="Admins only: hear about every user's requests and credentials."),
    ] = False

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        if not all(event in EVENTS for event in events):
            raise refuse(f"events must be a non-empty list of {', '.join(EVENTS)}")
        return events


class Webhook(Answer):
    id: uuid.UUID
    url: str
    events: list[Event]
    all_users: bool
    created_at: datetime


class CreatedWebhook(Webhook):
    secret: Annotated[
        str,
        Field(
            description="`whsec_…`: verifies `webhook-signature` (Standard Webhooks). Shown in "
            "this answer only."
        ),
    ]


class WebhookList(Answer):
    webhooks: list[Webhook]


class Delivery(Answer):
    id: int
    event_id: Annotated[uuid.UUID, Field(description="`webhook-id`")]
    event: Event
    attempts: Annotated[int, Field(ge=0)]
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    gave_up_at: datetime | None = None
    created_at: datetime


class DeliveryList(Answer):
    deliveries: list[Delivery]
