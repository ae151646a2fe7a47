"""Retries with exponential backoff and full jitter, and the translation of foreign errors.

What is retried: Transient (5xx, SlowDown, 429, timeouts, resets) and Corrupted (the target
stored other bytes than were sent). Everything else is final for the item at once: an
AccessDenied is not going to change by asking again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp

from storage import exceptions as storage_errors
from storage.egress import EgressRefused
from transfer.exceptions import (
    AccessDenied,
    AddressRefused,
    Corrupted,
    ItemFailed,
    SourceChanged,
    TargetRefused,
    TransferError,
    Transient,
    UploadGone,
    VerificationFailed,
)

T = TypeVar("T")

_AUTH_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
    }
)


class RetryPolicy:
    """`attempts` tries in all; waits base·2^n, capped, times a uniform random factor."""

    def __init__(
        self,
        *,
        attempts: int,
        base: float,
        cap: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.retries = 0  # how many times any call waited and tried again (for the report)

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0, min(self.cap, self.base * 2**attempt))

    async def call(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run `operation` until it succeeds, fails for good, or the attempts run out."""
        for attempt in range(self.attempts):
            try:
                return await operation()
            except Corrupted as exc:
                if attempt + 1 == self.attempts:
                    raise VerificationFailed(f"{what}: {exc} ({self.attempts} attempts)") from exc
            except Transient:
                if attempt + 1 == self.attempts:
                    raise
            self.retries += 1
            await self._sleep(self.delay(attempt))
        raise AssertionError("unreachable")


def translate(exc: BaseException, side: str) -> TransferError:
    """A storage or aiohttp error as this package's; `side` ("source"/"target") for the reason."""
    if isinstance(exc, TransferError):
        return exc
    text = f"{side}: {exc}"
    if isinstance(exc, EgressRefused):
        return AddressRefused(text)
    if isinstance(exc, (aiohttp.ClientError, TimeoutError, ConnectionError)):
        return Transient(f"{side}: {type(exc).__name__}: {exc}")
    if isinstance(exc, storage_errors.BackendUnavailable):
        return Transient(text)
    if isinstance(exc, storage_errors.NoSuchUpload):
        return UploadGone(text)
    if isinstance(exc, storage_errors.IncompleteBody):
        return Transient(text)
    if isinstance(exc, storage_errors.NoSuchKey) and side == "source":
        return SourceChanged(f"source object vanished: {exc}")
    if isinstance(exc, storage_errors.BackendError):
        if exc.status in (401, 403) or exc.code in _AUTH_CODES:
            return AccessDenied(text)
        if exc.code in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch"):
            return Corrupted(text)
        if exc.status == 412:
            return SourceChanged(text)
        if exc.status >= 500 or exc.status == 429:
            return Transient(text)
    refused = TargetRefused if side == "target" else ItemFailed
    if isinstance(exc, storage_errors.StorageError):
        return refused(text)
    return refused(f"{side}: unexpected {type(exc).__name__}: {exc}")
