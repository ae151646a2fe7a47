"""What the transfer worker needs to run an import: its two ends, its manifest check, its report.

The worker (transfer.TransferWorker) runs imports beside transfers: `resolve_import` gives
the source (the old provider, an `S3Storage` on a session of the egress policy, closed when
the run ends) and the target (the user's bucket in Ferry's own backend, local or s3);
`ManifestCheck` hashes every object's bytes as the engine reads them and refuses, before the
object becomes visible, one whose SHA-256 or size is not the manifest's, and writes the
manifest's section of the report in the transaction that finishes the job.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import Bucket, PortabilityRequest, TransferItem
from portability.imports.manifest import Expected, fetch_manifest
from portability.imports.service import open_source
from storage.base import Storage
from storage.egress import EgressPolicy
from storage.s3 import S3Storage
from transfer.exceptions import ItemFailed, ReadBack, TransferError
from transfer.spec import Source, Target

MISMATCH = "does not match the source's manifest"
LISTED = 100  # keys listed per section of the report; the counts are always whole


async def resolve_import(
    request: PortabilityRequest,
    *,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    master_key: bytes,
    egress: EgressPolicy,
) -> tuple[Source, Target]:
    options = (request.meta or {}).get("options") or {}
    target = options.get("target") or {}
    async with sessions() as session:
        bucket = await session.scalar(
            sa.select(Bucket).where(
                Bucket.name == target.get("bucket"), Bucket.owner_id == request.user_id
            )
        )
    if bucket is None:
        raise TransferError(f"the target bucket {target.get('bucket')!r} no longer exists")
    s = open_source(master_key, request)
    remote = S3Storage(
        s["endpoint_url"],
        s["region"] or "us-east-1",
        s["access_key_id"],
        s["secret_access_key"],
        s["session_token"],
        s["addressing_style"] or "path",
        session=egress.session(),
        owns_session=True,
        retries=0,  # the engine retries whole steps with its own policy
    )
    source = Source(remote, s["bucket"], s["prefix"] or "", owned=True)
    return source, Target(
        storage,
        bucket.backend_bucket,
        bucket.backend_prefix + str(target.get("prefix") or ""),
        on_conflict=options.get("on_conflict") or "skip_identical",
    )


class ManifestCheck:
    """A SourceObserver: each object's SHA-256, computed as it is read, against the manifest.

    Spans may arrive out of order (parts are read in parallel): those ahead of the hash are
    copied and kept until the gap is filled: at most the parts in flight, but these copies are
    not counted in the engine's memory budget.
    """

    def __init__(self, expected: dict[str, Expected]) -> None:
        self.expected = expected
        self._hashes: dict[str, tuple[Any, int, dict[int, bytes]]] = {}

    def read(self, key: str, offset: int, data: memoryview) -> None:
        if key not in self.expected:
            return
        hasher, done, ahead = self._hashes.get(key) or (hashlib.sha256(), 0, {})
        if offset < done:  # a fresh attempt of the object starts again from its first byte
            hasher, done, ahead = hashlib.sha256(), 0, {}
        ahead[offset] = bytes(data)
        while done in ahead:
            chunk = ahead.pop(done)
            hasher.update(chunk)
            done += len(chunk)
        self._hashes[key] = (hasher, done, ahead)

    async def finished(self, key: str, size: int) -> None:
        entry = self.expected.get(key)
        if entry is None:  # written at the source after its manifest: the engine's checks
            return
        hasher, done, _ = self._hashes.pop(key, (hashlib.sha256(), 0, {}))
        if size != entry.size:
            raise ItemFailed(f"{MISMATCH}: {size} bytes, the manifest says {entry.size}")
        if done != size:  # a resumed upload: the engine reads it back from Ferry's storage
            raise ReadBack(f"{key!r}: {done} of {size} bytes were read in this attempt")
        if entry.sha256 is not None and hasher.hexdigest() != entry.sha256:
            raise ItemFailed(f"{MISMATCH} (sha256 {hasher.hexdigest()[:16]}…)")

    async def report(
        self, session: AsyncSession, request_id: uuid.UUID
    ) -> tuple[dict[str, Any], str | None]:
        """The report's `manifest` section, and the request's error if objects mismatched:
        run in the transaction that finishes the job, so no reader sees one without the
        other."""
        section = await _compare(session, request_id, self.expected)
        mismatched = section["mismatched"]
        error = f"{mismatched} object(s) do not match the source's manifest" if mismatched else None
        return {"manifest": section}, error


async def manifest_check(
    request: PortabilityRequest, *, master_key: bytes, egress: EgressPolicy
) -> ManifestCheck | None:
    """The check of an import given a manifest; None for one without (or a transfer)."""
    if request.request_type != "import":
        return None
    source = open_source(master_key, request)
    if not source["manifest_url"]:
        return None
    expected = await fetch_manifest(
        egress, source["manifest_url"], bucket=source["bucket"], prefix=source["prefix"] or ""
    )
    return ManifestCheck(expected)


async def _compare(
    session: AsyncSession, request_id: uuid.UUID, expected: dict[str, Expected]
) -> dict[str, Any]:
    rows = (
        await session.execute(
            sa.select(TransferItem.key, TransferItem.state, TransferItem.error).where(
                TransferItem.request_id == request_id
            )
        )
    ).all()
    seen = {key for key, _, _ in rows}
    verified = sorted(k for k, state, _ in rows if state == "done" and k in expected)
    mismatches = sorted(k for k, state, e in rows if state == "failed" and MISMATCH in (e or ""))
    missing = sorted(k for k in expected if k not in seen)
    return {
        "verified": len(verified),
        "mismatched": len(mismatches),
        "missing_at_source": len(missing),
        "mismatches": mismatches[:LISTED],
        "missing": missing[:LISTED],
    }
