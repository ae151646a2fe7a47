"""The transfer form's "Test connection": a real HeadBucket and ListObjectsV2 on the target.

Nothing is written. The answer is one sentence a person can act on (wrong keys, no such
bucket, unreachable endpoint), never a trace, and never what the endpoint said beyond its S3
error code and a short message: the endpoint is the user's, and must not become a way to read
other services (the egress policy keeps it off internal addresses in the first place).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp

from storage.egress import EgressPolicy, EgressRefused
from storage.exceptions import BackendError, BackendUnavailable, NoSuchBucket, StorageError
from storage.s3 import S3Storage

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


async def check_destination(destination: dict[str, Any], egress: EgressPolicy) -> CheckResult:
    """HeadBucket, then list one key under the prefix, with the destination's own keys."""
    try:
        await egress.check_endpoint(destination["endpoint_url"])
    except EgressRefused as exc:
        return CheckResult(False, f"{exc}.")
    http = egress.session(
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS), auto_decompress=False
    )
    target = S3Storage(
        destination["endpoint_url"],
        destination["region"],
        destination["access_key_id"],
        destination["secret_access_key"],
        destination.get("session_token"),
        destination.get("addressing_style", "path"),
        session=http,
        retries=0,
    )
    bucket = destination["bucket"]
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS * 2):
            if not await target.bucket_exists(bucket):
                return CheckResult(False, f"The endpoint answered, but has no bucket {bucket!r}.")
            page = await target.list(bucket, prefix=destination.get("prefix", ""), max_keys=1)
    except TimeoutError:
        return CheckResult(False, "The endpoint did not answer within 10 seconds.")
    except EgressRefused as exc:
        return CheckResult(False, f"{exc}.")
    except BackendError as exc:
        said = f"{exc.code} (HTTP {exc.status})" if exc.code else f"HTTP {exc.status}"
        return CheckResult(False, f"The endpoint refused: {said}.")
    except NoSuchBucket:
        return CheckResult(False, f"The endpoint answered, but has no bucket {bucket!r}.")
    except BackendUnavailable:
        return CheckResult(
            False, "Could not reach the endpoint, or it did not answer as an S3 service does."
        )
    except StorageError:
        return CheckResult(False, "The endpoint's answer was not one an S3 service gives.")
    except aiohttp.ClientError:
        return CheckResult(False, "Could not connect to the endpoint.")
    finally:
        await http.close()
    where = f"{bucket}/{destination.get('prefix', '')}"
    holds = "already holds objects" if page.objects or page.common_prefixes else "is empty"
    return CheckResult(True, f"Connected: bucket {bucket!r} is readable; {where} {holds}.")
