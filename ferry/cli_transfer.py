"""`ferry transfer …`: start a push to another S3 endpoint, follow it, cancel it, read its report.

A click group for the composition root to attach (`main.add_command(transfer)`). `start`
creates the request through the same function the API uses; the copying is done by whichever
worker (`ferry serve` or `ferry worker`) picks the request up.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any, TypeVar

import click

from db.engine import create_engine, session_factory
from db.models import PortabilityRequest
from db.types import utcnow
from ferry.cli_common import (
    find_user,
    in_session,
    load,
    now,
    progress_bar,
    run,
    size_text,
)
from ferry.cli_options import config_option
from transfer.spec import CHECKSUMS

T = TypeVar("T")

FINAL = ("completed", "failed", "cancelled", "expired")
ACTIVE = ("pending", "processing")
TARGET_ENV = "FERRY_TARGET_"


@click.group()
def transfer() -> None:
    """Push a user's objects to another S3 endpoint, verified and resumable."""


@transfer.command("start")
@config_option
@click.option("--user", "email", required=True, help="The owner's email.")
@click.option("--to-endpoint", required=True, help="Target S3 endpoint URL.")
@click.option("--to-bucket", required=True, help="Target bucket (must exist).")
@click.option("--to-prefix", default="", help="Key prefix in the target bucket.")
@click.option("--to-region", default="us-east-1", show_default=True)
@click.option("--to-addressing-style", type=click.Choice(["path", "virtual"]), default="path")
@click.option(
    "--checksum",
    type=click.Choice(CHECKSUMS),
    default="auto",
    show_default=True,
    help="Integrity header besides Content-MD5 (md5: for targets refusing x-amz-checksum-*).",
)
@click.option("--bucket", "source_bucket", default=None, help="Ferry bucket to copy from.")
@click.option("--prefix", "source_prefix", default="", help="Only keys under this prefix.")
@click.option("--json", "as_json", is_flag=True, help="Print the request resource as JSON.")
def start(
    config_path: str | None,
    email: str,
    to_endpoint: str,
    to_bucket: str,
    to_prefix: str,
    to_region: str,
    to_addressing_style: str,
    checksum: str,
    source_bucket: str | None,
    source_prefix: str,
    as_json: bool,
) -> None:
    """Start a transfer; the target's keys come from FERRY_TARGET_ACCESS_KEY_ID,
    FERRY_TARGET_SECRET_ACCESS_KEY and (optionally) FERRY_TARGET_SESSION_TOKEN."""
    from portability.transfers import create_transfer_request

    access_key_id = os.environ.get(TARGET_ENV + "ACCESS_KEY_ID", "")
    secret_access_key = os.environ.get(TARGET_ENV + "SECRET_ACCESS_KEY", "")
    if not access_key_id or not secret_access_key:
        raise click.UsageError(
            f"set {TARGET_ENV}ACCESS_KEY_ID and {TARGET_ENV}SECRET_ACCESS_KEY "
            "to the target's credentials"
        )
    destination = {
        "endpoint_url": to_endpoint,
        "region": to_region,
        "bucket": to_bucket,
        "prefix": to_prefix,
        "access_key_id": access_key_id,
        "secret_access_key": secret_access_key,
        "session_token": os.environ.get(TARGET_ENV + "SESSION_TOKEN") or None,
        "addressing_style": to_addressing_style,
        "checksum": checksum,
    }
    config = load(config_path)

    async def work(runtime: Any, session: Any) -> dict[str, Any]:
        user = await find_user(session, email)
        body = {
            "request_type": "transfer",
            "destination": destination,
            "source": {"bucket": source_bucket, "prefix": source_prefix},
        }
        request = await create_transfer_request(
            session, runtime.master_key, user, body, now=now(), egress=runtime.egress
        )
        return _summary(request)

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"transfer {answer['id']} is {answer['status']}")
    click.echo(f"follow it with: ferry transfer status {answer['id']} --follow")


@transfer.command("status")
@config_option
@click.argument("request_id")
@click.option("--follow", is_flag=True, help="Redraw a progress bar until the transfer ends.")
@click.option("--interval", type=float, default=1.0, show_default=True, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print status and progress as JSON.")
def status(
    config_path: str | None, request_id: str, follow: bool, interval: float, as_json: bool
) -> None:
    """Show a transfer's status and progress (bytes, objects, rate, ETA)."""
    request = _load(config_path, request_id)
    if as_json and not follow:
        click.echo(json.dumps(_summary(request), indent=2))
        return
    if not follow:
        click.echo(_status_line(request))
        _print_error(request)
        return
    live = sys.stderr.isatty()
    last = ""
    while True:
        line = _progress_line(request)
        if live:
            click.echo("\r" + line.ljust(len(last)), nl=False, err=True)
        elif line != last:
            click.echo(line, err=True)
        last = line
        if request.status in FINAL:
            break
        time.sleep(interval)
        request = _load(config_path, request_id)
    if live:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps(_summary(request), indent=2))
    else:
        click.echo(_status_line(request))
        _print_error(request)
    if request.status != "completed":
        sys.exit(1)


@transfer.command("cancel")
@config_option
@click.argument("request_id")
def cancel(config_path: str | None, request_id: str) -> None:
    """Cancel a transfer: workers stop and abort its open multipart uploads."""
    from portability.exports import service

    rid = _request_id(request_id)

    async def work(sessions: Any) -> str | None:
        # The service's cancel, as the API's: the audit event and the revocation of the
        # request's credentials come with it.
        async with sessions.begin() as session:
            current = await service.lock_request(session, rid)
            if current is None or current.request_type != "transfer":
                return "missing"
            if current.status not in ACTIVE:
                return current.status
            await service.cancel(session, current, now=utcnow(), actor="admin")
            return None

    outcome = _with_database(config_path, work)
    if outcome == "missing":
        raise click.ClickException(f"no transfer {request_id}")
    if outcome is not None:
        raise click.ClickException(f"transfer {request_id} is {outcome} already")
    click.echo(f"transfer {request_id} cancelled; open uploads are being aborted")


@transfer.command("report")
@config_option
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
def report(config_path: str | None, request_id: str, as_json: bool) -> None:
    """Show the final report: copied, skipped, failed (with reasons), how each was verified."""
    request = _load(config_path, request_id)
    body = (request.meta or {}).get("report")
    if not body:
        raise click.ClickException(f"transfer {request_id} is {request.status}: no report yet")
    if as_json:
        click.echo(json.dumps(body, indent=2))
        return
    objects, size = body["objects"], body["bytes"]
    click.echo(f"transfer {request.id}: {body['status']} in {body['duration_seconds']:.1f}s")
    click.echo(
        f"objects: {objects['total']} total, {objects['copied']} copied, "
        f"{objects['skipped']} skipped, {objects['failed']} failed"
    )
    click.echo(
        f"bytes:   {size_text(size['total'])} total, {size_text(size['copied'])} copied, "
        f"{size_text(size['skipped'])} skipped"
        + (f", {size_text(body['bytes_per_second'])}/s" if body.get("bytes_per_second") else "")
    )
    click.echo(f"verify:  {body['verify']} (checksum {body.get('checksum') or 'md5'})")
    for method, count in sorted(body.get("verified", {}).items()):
        click.echo(f"  {method:<24}{count}")
    if body.get("failures"):
        click.echo("failures:")
        for failure in body["failures"]:
            click.echo(f"  {failure['key']}: {failure['reason']}")
        if body.get("failures_truncated"):
            click.echo("  … (more failures than listed)")
    if body["status"] != "completed":
        sys.exit(1)


# helpers


def _request_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.UsageError(f"{value!r} is not a request id") from None


def _with_database(config_path: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(sessions)` against the configured database only (no storage, no keys)."""

    config = load(config_path)

    async def main() -> T:
        engine = create_engine(config.database.url)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return run(main())


def _load(config_path: str | None, request_id: str) -> PortabilityRequest:
    rid = _request_id(request_id)

    async def work(sessions: Any) -> PortabilityRequest | None:
        async with sessions() as session:
            found: PortabilityRequest | None = await session.get(PortabilityRequest, rid)
            return found

    request = _with_database(config_path, work)
    if request is None or request.request_type != "transfer":
        raise click.ClickException(f"no transfer {request_id}")
    return request


def _summary(request: PortabilityRequest) -> dict[str, Any]:
    meta = request.meta or {}
    return {
        "id": str(request.id),
        "status": request.status,
        "progress": meta.get("progress", {}),
        "error": meta.get("error"),
        "completed_at": None
        if request.completed_at is None
        else request.completed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _status_line(request: PortabilityRequest) -> str:
    return f"transfer {request.id}: {request.status}  {_progress_line(request)}"


def _print_error(request: PortabilityRequest) -> None:
    error = (request.meta or {}).get("error")
    if error:
        click.echo(f"error: {error}", err=True)


def _progress_line(request: PortabilityRequest) -> str:
    return progress_bar((request.meta or {}).get("progress") or {}, request.status)
