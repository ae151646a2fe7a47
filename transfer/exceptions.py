"""Errors of the copy engine.

    TransferError
    ├── InvalidDestination   a destination that cannot work (bad URL, addressing style, checksum)
    ├── Transient            worth another try: 5xx, SlowDown, 429, timeouts, connection resets
    │   └── Corrupted        the target stored other bytes than were sent (BadDigest, or a part
    │                        acknowledged with another MD5); retried, then VerificationFailed
    ├── ChecksumRefused      the target refused x-amz-checksum-* headers ("auto" falls back)
    ├── UploadGone           the multipart upload no longer exists (aborted, expired, completed)
    ├── LeaseLost            another worker took the item over: stop without writing anything
    ├── Cancelled            the request was cancelled while the item was being copied
    ├── ReadBack             an observer saw only part of a resumed object: let it read the
    │                        completed object back from the target (transfer/observe.py)
    └── ItemFailed           this object cannot be copied; `reason` says why, for the report
        ├── AccessDenied     a 401/403 from the source or target: not retried
        │   └── SourceRefused  the source refused the credential itself (revoked, expired,
        │                    wrong): no other object can be read, so the job gives up
        ├── SourceChanged    the source object changed or vanished during the copy
        ├── TargetRefused    any other refusal (4xx) from the target
        ├── AddressRefused   the egress policy does not let Ferry connect to the target
        └── VerificationFailed  what the target holds does not match what was read

Storage errors (storage.exceptions) and aiohttp errors are translated into these at the edges
of the package (retry.translate); callers above never see them.
"""

from __future__ import annotations


class TransferError(Exception):
    """Base of every copy-engine error."""


class InvalidDestination(TransferError):
    pass


class Transient(TransferError):
    pass


class Corrupted(Transient):
    pass


class ChecksumRefused(TransferError):
    pass


class UploadGone(TransferError):
    pass


class LeaseLost(TransferError):
    pass


class Cancelled(TransferError):
    pass


class ReadBack(TransferError):
    pass


class ItemFailed(TransferError):
    """A permanent failure of one object; `reason` is what the report shows."""

    kind = "error"

    @property
    def reason(self) -> str:
        return f"{self.kind}: {self}"


class AccessDenied(ItemFailed):
    kind = "access-denied"


class SourceRefused(AccessDenied):
    kind = "source-refused"


class SourceChanged(ItemFailed):
    kind = "source-changed"


class TargetRefused(ItemFailed):
    kind = "target-refused"


class AddressRefused(ItemFailed):
    kind = "address-refused"


class VerificationFailed(ItemFailed):
    kind = "verification-failed"
