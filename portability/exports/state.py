"""The export worker's state in a request's `metadata`, typed.

The worker loads what it reads of `metadata` into an :class:`ExportState` and stores it back
as the JSON keys that the API, the dashboard, the mails and the CLI read (their meaning is
listed in portability/requests.py); keys it does not own (`due_at`, `notifications`,
`credentials`, …) are kept as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from db.models import PortabilityRequest
from portability.requests import iso


@dataclass
class Progress:
    """`metadata.progress`: what the progress bars show."""

    bytes_done: int = 0
    bytes_total: int = 0
    objects_done: int = 0
    objects_total: int = 0
    bytes_per_second: int = 0
    eta_seconds: int | None = None


_PROGRESS = frozenset(Progress.__dataclass_fields__)


@dataclass(frozen=True)
class StoredFile:
    """One file an export delivered (`metadata.parts[]`); answers add its signed `url`."""

    name: str
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Options:
    """What the owner asked for (`metadata.options`, written when the request is made)."""

    archive_format: str = "zip"
    include: tuple[str, ...] = ("personal", "files")


@dataclass
class ExportState:
    """The worker's keys of `metadata`; None (or empty) ones are not written."""

    options: Options = field(default_factory=Options)
    progress: Progress = field(default_factory=Progress)
    attempts: int = 0
    started_at: datetime | None = None
    parts: list[StoredFile] = field(default_factory=list)
    manifest_key: str | None = None
    link_credential: str | None = None
    report: dict[str, Any] | None = None
    error: str | None = None
    purged_at: datetime | None = None
    receipt: dict[str, Any] | None = None
    # Written by others, read by the worker.
    links_revoked_at: datetime | None = None
    pull_credentials: tuple[str, ...] = ()

    @classmethod
    def load(cls, meta: dict[str, Any] | None) -> ExportState:
        meta = meta or {}
        options = meta.get("options") or {}
        progress = meta.get("progress") or {}
        return cls(
            options=Options(
                archive_format=options.get("archive_format") or "zip",
                include=tuple(options.get("include") or ("personal", "files")),
            ),
            progress=Progress(**{k: v for k, v in progress.items() if k in _PROGRESS}),
            attempts=int(meta.get("attempts") or 0),
            started_at=_time(meta.get("started_at")),
            parts=[
                StoredFile(p["name"], p["key"], int(p["size"]), p.get("sha256") or "")
                for p in meta.get("parts") or []
            ],
            manifest_key=meta.get("manifest_key"),
            link_credential=meta.get("link_credential"),
            report=meta.get("report"),
            error=meta.get("error"),
            purged_at=_time(meta.get("purged_at")),
            receipt=meta.get("receipt"),
            links_revoked_at=_time(meta.get("links_revoked_at")),
            pull_credentials=tuple(c["access_key_id"] for c in meta.get("credentials") or []),
        )

    def dump(self) -> dict[str, Any]:
        """The keys the worker owns, as stored (times as ISO text, as everywhere in it)."""
        owned: dict[str, Any] = {
            "progress": asdict(self.progress),
            "attempts": self.attempts,
            "started_at": iso(self.started_at),
            "parts": [asdict(p) for p in self.parts] or None,
            "manifest_key": self.manifest_key,
            "link_credential": self.link_credential,
            "report": self.report,
            "error": self.error,
            "purged_at": iso(self.purged_at),
            "receipt": self.receipt,
        }
        return {key: value for key, value in owned.items() if value is not None}

    def store(self, request: PortabilityRequest) -> None:
        """Write the worker's keys into the request's `metadata` (a new dict, so the ORM
        sees the change); keys it does not own stay."""
        request.meta = {**(request.meta or {}), **self.dump()}


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
