"""The engine's use of the one retry policy (storage.retry), and the translation of foreign errors.

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
from storage.retry import RetryPolicy
from transfer.exceptions import (
    AccessDenied,
    AddressRefused,
    ChecksumRefused,
    Corrupted,
    ItemFailed,
    SourceChanged,
    SourceRefused,
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
# Refusals of the credential itself, not of one object: every other read would fail the same.
_CREDENTIAL_CODES = _AUTH_CODES - {"AccessDenied"}


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, Transient)


def _exhausted(exc: Exception, what: str, attempts: int) -> Exception:
    if isinstance(exc, Corrupted):
        return VerificationFailed(f"{what}: {exc} ({attempts} attempts)")
    return exc


def engine_policy(
    *,
    attempts: int,
    base: float,
    cap: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rng: random.Random | None = None,
) -> RetryPolicy:
    """The engine's policy: Transient (and Corrupted) retried; Corrupted that outlasts the
    attempts becomes VerificationFailed."""
    return RetryPolicy(
        attempts=attempts,
        base=base,
        cap=cap,
        retryable=_retryable,
        exhausted=_exhausted,
        sleep=sleep,
        rng=rng,
    )


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
    if isinstance(exc, storage_errors.BadDigest):
        return Corrupted(text)
    if isinstance(exc, storage_errors.ChecksumUnsupported):
        return ChecksumRefused(text)
    if isinstance(exc, storage_errors.PreconditionFailed):
        return SourceChanged(text)
    if isinstance(exc, storage_errors.IncompleteBody):
        return Transient(text)
    if isinstance(exc, storage_errors.NoSuchKey) and side == "source":
        return SourceChanged(f"source object vanished: {exc}")
    if isinstance(exc, storage_errors.BackendError):
        if exc.status in (401, 403) or exc.code in _AUTH_CODES:
            if side == "source" and (exc.status == 401 or exc.code in _CREDENTIAL_CODES):
                return SourceRefused(f"the source refused: {exc}")
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


async def target_call(call: Awaitable[T]) -> T:
    """Await a request to the target's storage, its errors translated."""
    try:
        return await call
    except Exception as exc:
        raise translate(exc, "target") from exc
