"""`status`, `cancel` and `report` for the copy requests (`ferry transfer …`, `ferry import …`).

A transfer and an import are the same kind of request run by the same copy engine: they are
followed, cancelled and reported alike. `add_follow_commands` attaches the three commands to
a click group for one request type.
"""

from __future__ import annotations

import json
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
from ferry.cli_common import load, progress_bar, run
from ferry.cli_options import config_option
from portability.sizes import size_text

T = TypeVar("T")

FINAL = ("completed", "failed", "cancelled", "expired")
ACTIVE = ("pending", "processing")


def add_follow_commands(group: click.Group, request_type: str) -> None:
    """Attach status, cancel and report for requests of `request_type` to `group`."""

    @group.command("status")
    @config_option
    @click.argument("request_id")
    @click.option("--follow", is_flag=True, help="Redraw a progress bar until it ends.")
    @click.option("--interval", type=float, default=1.0, show_default=True, hidden=True)
    @click.option("--json", "as_json", is_flag=True, help="Print status and progress as JSON.")
    def status(
        config_path: str | None, request_id: str, follow: bool, interval: float, as_json: bool
    ) -> None:
        """Show the status and progress (bytes, objects, rate, ETA)."""
        request = load_request(config_path, request_id, request_type)
        if as_json and not follow:
            click.echo(json.dumps(summary(request), indent=2))
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
            request = load_request(config_path, request_id, request_type)
        if live:
            click.echo("", err=True)
        if as_json:
            click.echo(json.dumps(summary(request), indent=2))
        else:
            click.echo(_status_line(request))
            _print_error(request)
        if request.status != "completed":
            sys.exit(1)

    @group.command("cancel")
    @config_option
    @click.argument("request_id")
    def cancel(config_path: str | None, request_id: str) -> None:
        """Cancel it: workers stop and abort its open multipart uploads."""
        from portability.exports import service

        rid = _request_id(request_id)

        async def work(sessions: Any) -> str | None:
            # The service's cancel, as the API's: the audit event and the revocation of the
            # request's credentials come with it.
            async with sessions.begin() as session:
                current = await service.lock_request(session, rid)
                if current is None or current.request_type != request_type:
                    return "missing"
                if current.status not in ACTIVE:
                    return current.status
                await service.cancel(session, current, now=utcnow(), actor="admin")
                return None

        outcome = _with_database(config_path, work)
        if outcome == "missing":
            raise click.ClickException(f"no {request_type} {request_id}")
        if outcome is not None:
            raise click.ClickException(f"{request_type} {request_id} is {outcome} already")
        click.echo(f"{request_type} {request_id} cancelled; open uploads are being aborted")

    @group.command("report")
    @config_option
    @click.argument("request_id")
    @click.option("--json", "as_json", is_flag=True, help="Print the whole report as JSON.")
    def report(config_path: str | None, request_id: str, as_json: bool) -> None:
        """Show the final report: copied, skipped, failed (with reasons), how each was
        verified."""
        request = load_request(config_path, request_id, request_type)
        body = (request.meta or {}).get("report")
        if not body:
            raise click.ClickException(
                f"{request_type} {request_id} is {request.status}: no report yet"
            )
        if as_json:
            click.echo(json.dumps(body, indent=2))
            return
        _print_report(request, body)
        if body["status"] != "completed":
            sys.exit(1)


def _print_report(request: PortabilityRequest, body: dict[str, Any]) -> None:
    objects, size = body["objects"], body["bytes"]
    click.echo(
        f"{request.request_type} {request.id}: {body['status']} in {body['duration_seconds']:.1f}s"
    )
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
    manifest = body.get("manifest")
    if manifest:
        click.echo(
            f"manifest: {manifest['verified']} verified, {manifest['mismatched']} mismatched, "
            f"{manifest['missing_at_source']} missing at the source"
        )
    conflicts = body.get("conflicts") or {}
    if conflicts.get("objects"):
        click.echo(
            f"conflicts: {conflicts['replaced']} replaced, {conflicts['kept']} kept"
            f" (on_conflict: {body.get('on_conflict', 'skip_identical')})"
        )
        for conflict in conflicts["objects"]:
            click.echo(f"  {conflict['target_key']}: {conflict['outcome']}")
        if conflicts.get("truncated"):
            click.echo("  … (more conflicts than listed)")
    if body.get("failures"):
        click.echo("failures:")
        for failure in body["failures"]:
            click.echo(f"  {failure['key']}: {failure['reason']}")
        if body.get("failures_truncated"):
            click.echo("  … (more failures than listed)")


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


def load_request(config_path: str | None, request_id: str, request_type: str) -> PortabilityRequest:
    rid = _request_id(request_id)

    async def work(sessions: Any) -> PortabilityRequest | None:
        async with sessions() as session:
            found: PortabilityRequest | None = await session.get(PortabilityRequest, rid)
            return found

    request = _with_database(config_path, work)
    if request is None or request.request_type != request_type:
        raise click.ClickException(f"no {request_type} {request_id}")
    return request


def summary(request: PortabilityRequest) -> dict[str, Any]:
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
    return f"{request.request_type} {request.id}: {request.status}  {_progress_line(request)}"


def _print_error(request: PortabilityRequest) -> None:
    error = (request.meta or {}).get("error")
    if error:
        click.echo(f"error: {error}", err=True)


def _progress_line(request: PortabilityRequest) -> str:
    return progress_bar((request.meta or {}).get("progress") or {}, request.status)
