"""What a transfer copies: from a Source to a Target, both a bucket and prefix of a `Storage`.

A push names its target as a Destination (the user's S3 endpoint and credentials), opened
into a Target on the worker's egress-checked session; an import passes a Target on Ferry's
own storage directly. The composition root (ferry/) builds them from a request row
(`resolve`); this package never reads configuration or unseals anything itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import aiohttp

from storage.base import Storage
from storage.exceptions import ConfigError
from storage.s3 import S3Storage
from storage.s3_wire import Endpoint, check_addressing_style
from transfer.exceptions import InvalidDestination

CHECKSUMS = ("auto", "md5", "crc32c", "sha256")
# What a copy does when the target key holds a different object (the same one is skipped,
# except under "overwrite"): replace it and list it, or leave it, fail the item and list it.
ON_CONFLICT = ("skip_identical", "overwrite", "fail")


def _check_checksum(setting: str) -> None:
    if setting not in CHECKSUMS:
        raise InvalidDestination(f"checksum {setting!r} is not one of {', '.join(CHECKSUMS)}")


class Secret(str):
    """A string that does not print itself (in reprs, logs, tracebacks)."""

    def __repr__(self) -> str:
        return "Secret('**********')" if self else "Secret('')"


@dataclass(frozen=True)
class Source:
    """Keys under `prefix` in a backend bucket; the part after the prefix is what is copied.

    `owned`: the worker closes `storage` when the job's run ends (a storage `resolve` made
    for this request); otherwise it belongs to the caller (the process-wide backend).
    """

    storage: Storage
    bucket: str
    prefix: str = ""
    owned: bool = False

    def relative(self, key: str) -> str:
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key


@dataclass(frozen=True)
class Destination:
    """A target S3 endpoint, bucket and key prefix, with the credentials to write there.

    `checksum`: which integrity header accompanies each upload besides Content-MD5: `auto`
    tries CRC32C and falls back to MD5 alone when the target refuses it; `md5` never sends
    flexible-checksum headers (B2, R2, older Ceph reject them); `crc32c`/`sha256` insist.
    """

    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    addressing_style: str = "path"
    checksum: str = "auto"

    def __post_init__(self) -> None:
        # Wrapped here so a caller passing plain strings still gets secrets that do not print.
        object.__setattr__(self, "secret_access_key", Secret(self.secret_access_key))
        if self.session_token is not None:
            object.__setattr__(self, "session_token", Secret(self.session_token))
        _check_checksum(self.checksum)
        if not self.bucket:
            raise InvalidDestination("the destination names no bucket")
        try:
            check_addressing_style(self.addressing_style, "addressing_style")
            Endpoint.parse(self.endpoint_url)
        except ConfigError as exc:
            raise InvalidDestination(str(exc)) from None

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint.parse(self.endpoint_url)

    def target_key(self, relative_key: str) -> str:
        return self.prefix + relative_key

    def open(self, session: aiohttp.ClientSession) -> Target:
        """The destination as a Target, on `session` (the worker's egress-checked pool).

        One try per request: the copy engine retries whole steps with its own policy.
        """
        storage = S3Storage(
            self.endpoint_url,
            self.region,
            self.access_key_id,
            self.secret_access_key,
            self.session_token,
            self.addressing_style,
            session=session,
            retries=0,
        )
        return Target(storage, self.bucket, self.prefix, checksum=self.checksum)


@dataclass(frozen=True)
class Target:
    """Where a job writes: keys under `prefix` in a bucket of `storage`.

    `checksum`: as Destination's. `on_conflict`: one of ON_CONFLICT. The engine never closes
    `storage`: its caller does.
    """

    storage: Storage
    bucket: str
    prefix: str = ""
    checksum: str = "auto"
    on_conflict: str = "skip_identical"

    def __post_init__(self) -> None:
        _check_checksum(self.checksum)
        if self.on_conflict not in ON_CONFLICT:
            raise InvalidDestination(
                f"on_conflict {self.on_conflict!r} is not one of {', '.join(ON_CONFLICT)}"
            )
        if not self.bucket:
            raise InvalidDestination("the target names no bucket")

    @property
    def identity(self) -> str:
        """A short stable name for "this bucket at this location" (no credentials in it)."""
        raw = f"{self.storage.location}\n{self.bucket}".encode()
        return hashlib.sha256(raw).hexdigest()[:32]

    def target_key(self, relative_key: str) -> str:
        return self.prefix + relative_key
