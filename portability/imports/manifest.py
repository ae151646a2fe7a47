"""The source's own record of what it holds: a `ferry-manifest` fetched from its link.

An import given a manifest checks every object it copies against it: the sha256 of the bytes
as they are read from the source, and the size. The manifest covers all of the user's
buckets at the source; the import keeps the entries of its source bucket and prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson

from portability.exports.manifest import FORMAT, parse_entries
from storage.egress import EgressPolicy, EgressRefused
from transfer.exceptions import TransferError

MAX_BYTES = 512 * 1024 * 1024  # a manifest line is ~250 bytes: about two million objects
_CHUNK = 256 * 1024


class ManifestError(TransferError):
    """The manifest could not be had or is not one; the import fails with this reason."""


@dataclass(frozen=True)
class Expected:
    size: int
    sha256: str | None  # None: the source wrote no digest for this object


async def fetch_manifest(
    egress: EgressPolicy, url: str, *, bucket: str, prefix: str
) -> dict[str, Expected]:
    """The manifest's entries for keys under `prefix` in `bucket`, by key."""
    expected: dict[str, Expected] = {}
    try:
        async with egress.session() as session:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ManifestError(_refusal(response.status))
                async for entry in parse_entries(_checked(response.content)):
                    key = entry.get("key")
                    if entry.get("bucket") != bucket or not isinstance(key, str):
                        continue
                    if entry.get("error") or not key.startswith(prefix):
                        continue
                    sha = entry.get("sha256")
                    expected[key] = Expected(
                        int(entry.get("size") or 0), sha if isinstance(sha, str) else None
                    )
    except EgressRefused as exc:
        raise ManifestError(f"the manifest link is refused: {exc}") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ManifestError(f"the manifest could not be fetched: {type(exc).__name__}") from None
    except (orjson.JSONDecodeError, ValueError, TypeError):
        raise ManifestError(f"the manifest link does not hold a {FORMAT}") from None
    return expected


async def _checked(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body in chunks: its header must be a ferry-manifest's, its size bounded."""
    seen = 0
    header = b""
    async for chunk in content.iter_chunked(_CHUNK):
        seen += len(chunk)
        if seen > MAX_BYTES:
            raise ManifestError(f"the manifest is larger than {MAX_BYTES >> 20} MiB")
        if len(header) < 64:
            header += chunk
            if len(header) >= 32 and not header.startswith(b'{"format":"%s"' % FORMAT.encode()):
                raise ManifestError(f"the manifest link does not hold a {FORMAT}")
        yield chunk
    if seen == 0 or not header.startswith(b'{"format"'):
        raise ManifestError(f"the manifest link does not hold a {FORMAT}")


def _refusal(status: int) -> str:
    if status == 404:
        return "the source has no manifest at that link (not ready yet, or deleted)"
    if status in (401, 403):
        return "the source refused the manifest link (expired or revoked)"
    return f"the manifest link answered HTTP {status}"
