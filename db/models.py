"""Tables: the platform's accounts and records, issued credentials, portability requests.

Portable across SQLite and PostgreSQL: ids are ``sa.Uuid`` (native UUID / CHAR(32)), JSON is
JSONB on PostgreSQL, and timestamps go through :class:`db.types.UTCDateTime`. Every column
with a default has it twice: in Python, so the ORM knows the value without a round trip (an
``AsyncSession`` cannot lazy-load it afterwards), and in the database, so plain SQL inserts
(tools, fixtures, operators) get the same value.

No relationships are mapped: with asyncio a lazy load is an error, so queries join explicitly.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, MappedColumn, mapped_column

from db.base import NAMING_CONVENTION, Base
from db.types import AutoId, JSONType, utcnow

__all__ = [
    "NAMING_CONVENTION",
    "POSTGRESQL_SERVER_DEFAULT",
    "ApiKey",
    "AuditLog",
    "Base",
    "BillingRecord",
    "Bucket",
    "Credential",
    "DashboardSession",
    "ExportJob",
    "PortabilityRequest",
    "UsageRecord",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WebhookEvent",
]


# Column.info key: a server default that PostgreSQL has and SQLite does not.
POSTGRESQL_SERVER_DEFAULT = "postgresql_server_default"


def _uuid_pk() -> MappedColumn[uuid.UUID]:
    return mapped_column(sa.Uuid, primary_key=True, default=uuid.uuid4)


def _created_at() -> MappedColumn[datetime]:
    return mapped_column(nullable=False, default=utcnow, server_default=sa.func.now())


def _counter() -> MappedColumn[int]:
    return mapped_column(sa.BigInteger, nullable=False, default=0, server_default=sa.text("0"))


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    # Stored as given: callers normalise (strip, lower-case) before inserting and looking up.
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    created_at: Mapped[datetime] = _created_at()
    # How and when the user last signed in to the dashboard ('api_key' or 'oidc'), for the
    # admin console; sessions themselves are deleted a day after they end.
    last_sign_in_method: Mapped[str | None] = mapped_column(sa.String(16))
    last_sign_in_at: Mapped[datetime | None]


class ApiKey(Base):
    """A platform API key. Only its SHA-256 is kept; prefix and last4 let a user recognise it."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(sa.String(100))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    last4: Mapped[str] = mapped_column(sa.String(4))
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DashboardSession(Base):
    """A signed-in dashboard session, so that signing out ends it on the server.

    The cookie carries a random session id; only its SHA-256 is kept, so a database dump
    opens no session. Sign-out, or an admin's "sign out everywhere", sets ``ended_at``, and
    the next request with that cookie is refused. ``method`` says how the user signed in.
    """

    __tablename__ = "dashboard_sessions"

    id_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    method: Mapped[str] = mapped_column(sa.String(16), default="api_key", server_default="api_key")
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # An OIDC session's ID token, handed back to the provider at sign-out (`id_token_hint`,
    # which some providers require). It is no key to Ferry: its audience is the client id,
    # which Ferry's API never accepts.
    id_token_hint: Mapped[str | None] = mapped_column(sa.Text)


class UsageRecord(Base):
    """Metered usage of one bucket over one period (exported as personal data)."""

    __tablename__ = "usage_records"
    __table_args__ = (sa.Index(None, "user_id", "period_start"),)

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    bucket: Mapped[str] = mapped_column(sa.String(255))
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    storage_bytes: Mapped[int] = _counter()
    egress_bytes: Mapped[int] = _counter()
    ingress_bytes: Mapped[int] = _counter()
    requests: Mapped[int] = _counter()


class BillingRecord(Base):
    """An invoice. No ON DELETE CASCADE: invoices are kept for the bookkeeping period."""

    __tablename__ = "billing_records"
    __table_args__ = (
        sa.Index(None, "user_id", "period_start"),
        sa.CheckConstraint("status IN ('paid', 'open', 'void')", name="status"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    invoice_number: Mapped[str] = mapped_column(sa.String(64), unique=True)
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    amount_cents: Mapped[int] = mapped_column(sa.BigInteger)
    currency: Mapped[str] = mapped_column(sa.String(3))
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="open", server_default="open")
    created_at: Mapped[datetime] = _created_at()


class AuditLog(Base):
    """One audited event: an S3 request through the gateway, an API call, an admin action.

    ``credential_id`` has no foreign key so the trail outlives deleted credentials, and
    ``user_id`` turns NULL when the user is deleted. Request-derived text (bucket, key, range,
    user agent) is TEXT: a hostile client chooses its length and an audit write must not fail.
    """

    __tablename__ = "audit_logs"
    __table_args__ = (
        # The personal-data export streams one user's trail in time order.
        sa.Index(None, "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(
        nullable=False, default=utcnow, server_default=sa.func.now(), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL")
    )
    credential_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid, index=True)
    actor: Mapped[str] = mapped_column(sa.String(16))  # 'user', 'admin', 'gateway', 'system'
    action: Mapped[str] = mapped_column(sa.String(64))  # 'GetObject', 'credentials.issue', ...
    bucket: Mapped[str | None] = mapped_column(sa.Text)
    key: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[int | None]  # HTTP status, when the event was a request
    bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    duration_ms: Mapped[int | None]
    client_addr: Mapped[str | None] = mapped_column(sa.String(64))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    range: Mapped[str | None] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Bucket(Base):
    """A user-facing bucket and where its objects live in the storage backend."""

    __tablename__ = "buckets"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"), index=True)
    backend_bucket: Mapped[str] = mapped_column(sa.String(255))
    backend_prefix: Mapped[str] = mapped_column(sa.String(1024), default="", server_default="")
    created_at: Mapped[datetime] = _created_at()


class Credential(Base):
    """An issued S3 credential: read-only, one bucket, some prefixes, a lifetime.

    ``secret_sealed`` is the AES-GCM output (nonce and tag included), so a database dump
    alone cannot sign a request; the session token is kept as a SHA-256 only.
    """

    __tablename__ = "credentials"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('user', 'export', 'session')", name="kind"),
        # The only grant this path can make; the database refuses anything wider.
        sa.CheckConstraint("permission = 'read-only'", name="permission"),
    )

    id: Mapped[uuid.UUID] = _uuid_pk()
    access_key_id: Mapped[str] = mapped_column(sa.String(20), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    bucket_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("buckets.id", ondelete="CASCADE"), index=True
    )
    # "user": issued to a user; "export": behind an export's download links; "session":
    # minted through STS by a user's token-free credential (`parent_id`), which it never
    # outlives and whose revocation revokes it.
    kind: Mapped[str] = mapped_column(sa.String(16), default="user", server_default="user")
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("credentials.id", ondelete="CASCADE"), index=True
    )
    parent_access_key_id: Mapped[str | None] = mapped_column(sa.String(20))  # for listings
    label: Mapped[str | None] = mapped_column(sa.String(200))
    secret_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    session_token_hash: Mapped[str | None] = mapped_column(sa.String(64))
    prefixes: Mapped[list[str]] = mapped_column(JSONType)
    permission: Mapped[str] = mapped_column(
        sa.String(16), default="read-only", server_default="read-only"
    )
    allowed_cidrs: Mapped[list[str] | None] = mapped_column(JSONType)
    max_bytes_per_second: Mapped[int | None] = mapped_column(sa.BigInteger)
    not_before: Mapped[datetime] = mapped_column(default=utcnow, server_default=sa.func.now())
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None]
    bytes_served: Mapped[int] = _counter()
    objects_served: Mapped[int] = _counter()
    requests_served: Mapped[int] = _counter()
    # When the credential.expired event was written to the outbox (once per credential).
    expiry_announced_at: Mapped[datetime | None]
    # Rotation: the secret before the last rotation keeps working until previous_until (a
    # grace period), so a destination can switch without a gap.
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    previous_until: Mapped[datetime | None]
    rotated_at: Mapped[datetime | None]


class PortabilityRequest(Base):
    """The seed table, column for column (see DESIGN.md, "Tables").

    ``metadata`` is a reserved name on declarative classes, so the column is mapped as
    :attr:`meta`. ``created_at`` is nullable as in the seed, but always set by the ORM.
    """

    __tablename__ = "portability_requests"
    __table_args__ = (
        sa.Index("idx_portability_user", "user_id"),
        sa.Index("idx_portability_status", "status"),
    )

    # PostgreSQL also defaults the id to gen_random_uuid() (added below); SQLite has no UUID
    # generator, there the Python default is the only one.
    id: Mapped[uuid.UUID] = mapped_column(
        sa.Uuid,
        primary_key=True,
        default=uuid.uuid4,
        info={POSTGRESQL_SERVER_DEFAULT: "gen_random_uuid()"},
    )
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("users.id"))
    request_type: Mapped[str] = mapped_column(sa.String(50))  # 'export', 'transfer'
    status: Mapped[str] = mapped_column(sa.String(50))
    format: Mapped[str | None] = mapped_column(sa.String(50))  # 'json', 'archive', 's3'
    export_url: Mapped[str | None] = mapped_column(sa.Text)
    expires_at: Mapped[datetime | None]
    transfer_destination: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(
        nullable=True, default=utcnow, server_default=sa.func.now()
    )
    completed_at: Mapped[datetime | None]
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONType)


# A server default that exists on one dialect only cannot be a Column argument. For
# metadata.create_all() it is added right after the table, as migration 0001 does inline;
# db.migrate's schema comparison reads it from the column's info.
@sa.event.listens_for(PortabilityRequest.__table__, "after_create")
def _add_postgresql_defaults(table: sa.Table, connection: sa.Connection, **_kw: Any) -> None:
    if connection.dialect.name != "postgresql":
        return
    for column in table.columns:
        default = column.info.get(POSTGRESQL_SERVER_DEFAULT)
        if default is not None:
            connection.execute(
                sa.text(
                    f"ALTER TABLE {table.name} ALTER COLUMN {column.name} SET DEFAULT {default}"
                )
            )


class ExportJob(Base):
    """The build of one export request: which worker holds it, and until when (db/leases.py).

    Beside the request rather than in it: the request table is the seed's, column for column.
    Made by the first worker that finds the export pending (portability/exports/queue.py).
    """

    __tablename__ = "export_jobs"

    request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("portability_requests.id", ondelete="CASCADE"), primary_key=True
    )
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None]


# Transfer work tables (the copy engine, transfer/). States are documented in transfer/states.py.


class TransferJob(Base):
    """The copy job of one transfer request: planning cursor, planning lease, counters.

    Counters are updated in the same transaction as the item or part they count, so progress
    read from here never counts a part twice, whichever worker wrote it.
    """

    __tablename__ = "transfer_jobs"
    __table_args__ = (
        sa.CheckConstraint("state IN ('planning', 'copying', 'finished')", name="state"),
    )

    request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("portability_requests.id", ondelete="CASCADE"), primary_key=True
    )
    state: Mapped[str] = mapped_column(sa.String(16), default="planning", server_default="planning")
    # Planning resumes after this source key (the last one whose page was stored).
    plan_cursor: Mapped[str | None] = mapped_column(sa.Text)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None]
    # What "auto" settled on for this destination ("crc32c", "sha256" or "md5").
    checksum: Mapped[str | None] = mapped_column(sa.String(16))
    # The target held nothing under the prefix when planning began: no per-object HEAD to
    # look for identical objects is needed.
    target_empty: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    objects_total: Mapped[int] = _counter()
    bytes_total: Mapped[int] = _counter()
    objects_copied: Mapped[int] = _counter()
    bytes_copied: Mapped[int] = _counter()
    objects_skipped: Mapped[int] = _counter()
    bytes_skipped: Mapped[int] = _counter()
    objects_failed: Mapped[int] = _counter()
    # Bytes on the target so far: finished parts of objects in flight included.
    bytes_done: Mapped[int] = _counter()
    retries: Mapped[int] = _counter()
    started_at: Mapped[datetime] = _created_at()
    planned_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class TransferItem(Base):
    """One source object to copy, and how far its copy got.

    ``target`` names the destination (a hash of endpoint and bucket, no credentials) so a
    later transfer to the same place can recognise objects an earlier one wrote.
    """

    __tablename__ = "transfer_items"
    __table_args__ = (
        sa.UniqueConstraint("request_id", "key"),
        sa.Index(None, "request_id", "state"),
        sa.Index(None, "target", "target_key"),
        sa.CheckConstraint(
            "state IN ('pending', 'copying', 'done', 'skipped', 'failed')", name="state"
        ),
        sa.CheckConstraint("conflict IN ('replaced', 'kept')", name="conflict"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("portability_requests.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(sa.Text)  # source key
    target_key: Mapped[str] = mapped_column(sa.Text)
    target: Mapped[str] = mapped_column(sa.String(64))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    etag: Mapped[str] = mapped_column(sa.String(255))  # source ETag when listed
    state: Mapped[str] = mapped_column(sa.String(16), default="pending", server_default="pending")
    content_type: Mapped[str | None] = mapped_column(sa.Text)
    # {"metadata": {...}, "headers": {...}}: what the target object is created with.
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    upload_id: Mapped[str | None] = mapped_column(sa.Text)
    part_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    checksum: Mapped[str | None] = mapped_column(sa.String(16))  # algorithm of the upload
    lease_owner: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    verified: Mapped[str | None] = mapped_column(sa.String(64))  # how, when done or skipped
    target_etag: Mapped[str | None] = mapped_column(sa.String(255))
    error: Mapped[str | None] = mapped_column(sa.Text)
    # A different object was at target_key: 'replaced' by this copy, or 'kept' (on_conflict
    # "fail" refused to replace it). None: the key was free, or held the same object.
    conflict: Mapped[str | None] = mapped_column(sa.String(16))
    finished_at: Mapped[datetime | None]


class TransferPart(Base):
    """A part the target acknowledged (and whose acknowledgement matched what was sent)."""

    __tablename__ = "transfer_parts"

    item_id: Mapped[int] = mapped_column(
        AutoId, sa.ForeignKey("transfer_items.id", ondelete="CASCADE"), primary_key=True
    )
    part_number: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(sa.BigInteger)
    md5: Mapped[str | None] = mapped_column(sa.String(32))  # hex; None for a server-side copy
    checksum: Mapped[str | None] = mapped_column(sa.String(128))  # base64
    etag: Mapped[str] = mapped_column(sa.String(255))


class WebhookEvent(Base):
    """The outbox: one row per state change others may hear about, written in the state
    change's own transaction, so an event exists exactly when its change does. The
    webhook worker fans each out to the endpoints that want it (`fanned_out_at`)."""

    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = _uuid_pk()  # the webhook-id header: the same on every retry
    type: Mapped[str] = mapped_column(sa.String(64))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = _created_at()
    fanned_out_at: Mapped[datetime | None] = mapped_column(index=True)


class Webhook(Base):
    """An endpoint that hears about a user's requests and credentials (or, set by an admin
    with ``all_users``, everyone's). The signing secret is sealed with the master key."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = _uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(sa.Text)
    events: Mapped[list[str]] = mapped_column(JSONType)
    all_users: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    secret_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = _created_at()


class WebhookDelivery(Base):
    """One event for one endpoint: tried until a 2xx answer, or for 24 hours."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (sa.UniqueConstraint("webhook_id", "event_id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    webhook_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _created_at()
    attempts: Mapped[int] = mapped_column(default=0, server_default=sa.text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(300))
    delivered_at: Mapped[datetime | None]
    gave_up_at: Mapped[datetime | None]
