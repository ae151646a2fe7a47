"""Progress and the final report, as written into the request's metadata.

The report stays bounded for large jobs: failures are listed up to a limit (with their
reasons), verified objects are counted by method, and the per-object list is included only
for jobs of at most `objects_limit` objects.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import TransferItem, TransferJob
from transfer import states
from transfer.store import JobView

# (session, request id) -> (sections to add to the report, the request's error if it failed)
Sections = Callable[[AsyncSession, uuid.UUID], Awaitable[tuple[dict[str, Any], str | None]]]


def iso(when: datetime | None) -> str | None:
    return None if when is None else when.strftime("%Y-%m-%dT%H:%M:%SZ")


class RateMeter:
    """Bytes per second over a sliding window of samples (monotonic clock injected)."""

    def __init__(self, window: float = 20.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, bytes_done: int) -> float:
        now = self._clock()
        self._samples.append((now, bytes_done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window:
            self._samples.popleft()
        first_time, first_bytes = self._samples[0]
        elapsed = now - first_time
        if elapsed <= 0:
            return 0.0
        return max(0.0, (bytes_done - first_bytes) / elapsed)


def progress(job: JobView, rate: float, phase: str) -> dict[str, Any]:
    remaining = max(0, job.bytes_total - job.bytes_done)
    eta = round(remaining / rate) if rate > 0 and job.state != states.PLANNING else None
    return {
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "objects_done": job.objects_done,
        "objects_total": job.objects_total,
        "bytes_per_second": round(rate),
        "eta_seconds": eta,
        "phase": phase,
        "objects_copied": job.objects_copied,
        "objects_skipped": job.objects_skipped,
        "objects_failed": job.objects_failed,
        "bytes_copied": job.bytes_copied,
        "bytes_skipped": job.bytes_skipped,
    }


def final_progress(job: TransferJob) -> dict[str, Any]:
    done = job.objects_copied + job.objects_skipped + job.objects_failed
    return {
        "bytes_done": job.bytes_done,
        "bytes_total": job.bytes_total,
        "objects_done": done,
        "objects_total": job.objects_total,
        "bytes_per_second": 0,
        "eta_seconds": None,
        "phase": states.FINISHED,
        "objects_copied": job.objects_copied,
        "objects_skipped": job.objects_skipped,
        "objects_failed": job.objects_failed,
        "bytes_copied": job.bytes_copied,
        "bytes_skipped": job.bytes_skipped,
    }


class ReportBuilder:
    """Builds the final report inside the transaction that finishes the job."""

    def __init__(
        self,
        *,
        verify: str,
        failures_limit: int,
        objects_limit: int,
        destination: dict[str, Any] | None = None,
        cause: str | None = None,
        sections: Sections | None = None,
    ) -> None:
        self.cause = cause  # why the job gave up before every object was tried
        # More of the report (an import's manifest section), and an error that says it better.
        self.sections = sections
        self.verify = verify
        self.failures_limit = failures_limit
        self.objects_limit = objects_limit
        self.destination = destination or {}

    async def __call__(
        self, session: AsyncSession, job: TransferJob, status: str
    ) -> tuple[dict[str, Any], str | None]:
        item = TransferItem
        mine = item.request_id == job.request_id
        methods = {
            str(method): int(count)
            for method, count in (
                await session.execute(
                    sa.select(item.verified, sa.func.count())
                    .where(mine, item.state.in_((states.DONE, states.SKIPPED)))
                    .group_by(item.verified)
                )
            ).all()
        }
        failures = [
            {"key": key, "size": size, "reason": error or "unknown"}
            for key, size, error in (
                await session.execute(
                    sa.select(item.key, item.size, item.error)
                    .where(mine, item.state == states.ITEM_FAILED)
                    .order_by(item.id)
                    .limit(self.failures_limit)
                )
            ).all()
        ]
        conflicts = await self._conflicts(session, job)
        finished = job.finished_at or job.started_at
        duration = max(0.0, (finished - job.started_at).total_seconds())
        report: dict[str, Any] = {
            "status": status,
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
            "duration_seconds": round(duration, 3),
            "objects": {
                "total": job.objects_total,
                "copied": job.objects_copied,
                "skipped": job.objects_skipped,
                "failed": job.objects_failed,
                "not_copied": max(
                    0,
                    job.objects_total
                    - job.objects_copied
                    - job.objects_skipped
                    - job.objects_failed,
                ),
            },
            "bytes": {
                "total": job.bytes_total,
                "copied": job.bytes_copied,
                "skipped": job.bytes_skipped,
            },
            "bytes_per_second": round(job.bytes_copied / duration) if duration > 0 else None,
            "verify": self.verify,
            "checksum": job.checksum,
            "verified": methods,
            "retries": job.retries,
            "failures": failures,
            "failures_truncated": job.objects_failed > len(failures),
            "conflicts": conflicts,
            **self.destination,
        }
        if job.objects_total <= self.objects_limit:
            rows = await session.execute(
                sa.select(
                    item.key,
                    item.target_key,
                    item.state,
                    item.size,
                    item.verified,
                    item.error,
                    item.conflict,
                )
                .where(mine)
                .order_by(item.id)
            )
            report["items"] = [
                {
                    "key": key,
                    "target_key": target_key,
                    "state": state,
                    "size": size,
                    "verified": verified,
                    **({"error": error} if state == states.ITEM_FAILED else {}),
                    **({"conflict": conflict} if conflict else {}),
                }
                for key, target_key, state, size, verified, error, conflict in rows.all()
            ]
        else:
            report["items_truncated"] = True
        said = None
        if self.sections is not None:
            more, said = await self.sections(session, job.request_id)
            report.update(more)
        error = None
        if status == states.FAILED and said:
            error = said
        elif status == states.FAILED and self.cause:
            left = report["objects"]["not_copied"] + job.objects_failed
            error = f"{self.cause} ({left} of {job.objects_total} objects not copied)"
        elif status == states.FAILED:
            first = failures[0]["reason"] if failures else ""
            error = f"{job.objects_failed} of {job.objects_total} objects failed" + (
                f"; first: {failures[0]['key']}: {first}" if failures else ""
            )
        return {"report": report, "progress": final_progress(job)}, error

    async def _conflicts(self, session: AsyncSession, job: TransferJob) -> dict[str, Any]:
        """Target keys that held a different object: counted by outcome, listed up to the
        failures limit."""
        item = TransferItem
        mine = sa.and_(item.request_id == job.request_id, item.conflict.is_not(None))
        counts = dict(
            (
                await session.execute(
                    sa.select(item.conflict, sa.func.count()).where(mine).group_by(item.conflict)
                )
            ).all()
        )
        listed = (
            await session.execute(
                sa.select(item.key, item.target_key, item.conflict)
                .where(mine)
                .order_by(item.id)
                .limit(self.failures_limit)
            )
        ).all()
        return {
            "replaced": int(counts.get("replaced", 0)),
            "kept": int(counts.get("kept", 0)),
            "objects": [
                {"key": key, "target_key": target_key, "outcome": outcome}
                for key, target_key, outcome in listed
            ],
            "truncated": sum(counts.values()) > len(listed),
        }
