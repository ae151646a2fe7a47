"""The transfer form's "Test connection": a real HeadBucket and ListObjectsV2 on the target.

Nothing is written. The answer is one sentence a person can act on (wrong keys, no such
bucket, unreachable endpoint), never a trace.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from storage.exceptions import StorageError
from storage.s3 import S3Storage

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


async def check_destination(destination: dict[str, Any]) -> CheckResult:
    """HeadBucket, then list one key under the prefix, with the destination's own keys."""
    target = S3Storage(
        destination["endpoint_url"],
        destination["region"],
        destination["access_key_id"],
        destination["secret_access_key"],
        destination.get("session_token"),
        destination.get("addressing_style", "path"),
        retries=0,
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
    )
    bucket = destination["bucket"]
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS * 2):
            if not await target.bucket_exists(bucket):
                return CheckResult(False, f"The endpoint answered, but has no bucket {bucket!r}.")
            page = await target.list(bucket, prefix=destination.get("prefix", ""), max_keys=1)
    except TimeoutError:
        return CheckResult(False, "The endpoint did not answer within 10 seconds.")
    except StorageError as exc:
        return CheckResult(False, f"The endpoint refused: {exc}")
    except aiohttp.ClientError as exc:
        return CheckResult(False, f"Could not connect: {exc or type(exc).__name__}")
    finally:
        await target.close()
    where = f"{bucket}/{destination.get('prefix', '')}"
    holds = "already holds objects" if page.objects or page.common_prefixes else "is empty"
    return CheckResult(True, f"Connected: bucket {bucket!r} is readable; {where} {holds}.")
