"""`ferry export start|status|revoke-links`: exports from the shell (the worker in `ferry serve`
builds them).

Registered by `ferry/cli.py` with `main.add_command(export)`. Helpers of `ferry.cli` are
imported inside the commands, so either module may be imported first.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import click

from ferry.cli_common import find_user, in_session, load, now, progress_bar, run
from ferry.cli_options import config_option

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ferry.runtime import Runtime

_FINAL_FOR_FOLLOW = ("ready", "completed", "failed", "cancelled", "expired")


@click.group()
def export() -> None:
    """Export a user's data: personal-data JSON, archives, or pull credentials."""


@export.command("start")
@config_option
@click.option("--user", "email", required=True, help="The user's email.")
@click.option("--format", "fmt", type=click.Choice(["json", "archive", "s3"]), required=True)
@click.option(
    "--archive-format", type=click.Choice(["tar.gz", "zip"]), default=None, help="For archive."
)
@click.option("--json", "as_json", is_flag=True, help="Print the request resource as JSON.")
def start(
    config_path: str | None, email: str, fmt: str, archive_format: str | None, as_json: bool
) -> None:
    """Queue an export for a user; a worker (`ferry serve` or `ferry worker`) builds it."""
    from ferry.worker import export_settings
    from portability.credentials import GatewayAddress
    from portability.exports import service
    from portability.exports.exceptions import ExportError

    config = load(config_path)
    body: dict[str, Any] = {"format": fmt}
    if archive_format:
        if fmt != "archive":
            raise click.UsageError("--archive-format goes with --format archive")
        body["archive_format"] = archive_format
    try:
        options = service.parse_export(body)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        user = await find_user(session, email)
        request, credentials = await service.create_export(
            session,
            runtime.master_key,
            user,
            options,
            settings=export_settings(config),
            endpoint=GatewayAddress(config.gateway.public_url, config.gateway.region),
            now=now(),
            actor="admin",
            storage=runtime.storage,
        )
        answer = service.resource(request)
        if credentials is not None:
            answer["credentials"] = credentials
        return answer

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"export {answer['id']} queued ({fmt}); follow it with:")
    click.echo(f"  ferry export status {answer['id']} --follow")
    for cred in answer.get("credentials") or []:
        click.echo(f"\nbucket {cred['bucket']} (secret shown once):")
        click.echo(cred["snippets"]["aws_cli"])


@export.command("status")
@config_option
@click.argument("request_id")
@click.option("--follow", is_flag=True, help="Show a progress bar until the export is built.")
@click.option("--json", "as_json", is_flag=True)
def status(config_path: str | None, request_id: str, follow: bool, as_json: bool) -> None:
    """Show an export (or transfer) request; with --follow, until it is done."""
    from ferry.runtime import open_runtime
    from ferry.worker import export_settings
    from portability.exports import downloads
    from portability.requests import get_for_user

    config = load(config_path)
    try:
        uuid.UUID(request_id)
    except ValueError:
        raise click.ClickException(f"not a request id: {request_id}") from None

    settings = export_settings(config)

    async def watch() -> dict[str, Any]:
        async with open_runtime(config) as runtime:
            while True:
                async with runtime.sessions() as session:
                    request = await get_for_user(session, request_id, None)
                    if request is None:
                        raise click.ClickException(f"no request {request_id}")
                    # The operator holds the master key: links are signed for them as for
                    # the owner, never read from the row.
                    answer = await downloads.owner_resource(
                        session, runtime.master_key, settings, request, now=now()
                    )
                if not follow or answer["status"] in _FINAL_FOR_FOLLOW:
                    return answer
                if not as_json:
                    line = progress_bar(answer["metadata"].get("progress") or {}, answer["status"])
                    click.echo(f"\r{answer['status']:<11}{line}", nl=False)
                await asyncio.sleep(1.0)

    started = time.monotonic()
    answer = run(watch())
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    if follow:
        line = progress_bar(answer["metadata"].get("progress") or {}, answer["status"])
        click.echo(f"\r{answer['status']:<11}{line}")
        click.echo(f"({time.monotonic() - started:.0f}s)")
    meta = answer["metadata"]
    click.echo(f"request {answer['id']}: {answer['request_type']} {answer['format'] or ''}")
    click.echo(f"status:  {answer['status']}")
    if meta.get("error"):
        click.echo(f"error:   {meta['error']}")
    for part in meta.get("parts") or []:
        click.echo(f"part:    {part.get('name')} ({part['size']} bytes, sha256 {part['sha256']})")
        if part.get("url"):
            click.echo(f"         {part['url']}")
    if meta.get("links_revoked_at"):
        click.echo(f"links:   revoked at {meta['links_revoked_at']}")
    if meta.get("manifest_url"):
        click.echo(f"manifest: {meta['manifest_url']}")
    if answer.get("expires_at"):
        click.echo(f"expires: {answer['expires_at']}")
    if answer["status"] == "failed":
        raise SystemExit(1)


@export.command("revoke-links")
@config_option
@click.argument("request_id")
@click.option("--json", "as_json", is_flag=True, help="Print the request resource as JSON.")
def revoke_links(config_path: str | None, request_id: str, as_json: bool) -> None:
    """Kill every download link (and pull credential) of a ready or completed export."""
    from portability.exports import service

    config = load(config_path)
    try:
        rid = uuid.UUID(request_id)
    except ValueError:
        raise click.ClickException(f"not a request id: {request_id}") from None

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        request = await service.lock_request(session, rid)
        if request is None:
            raise click.ClickException(f"no request {request_id}")
        done = await service.revoke_links(session, request, now=now(), actor="admin")
        return service.resource(done)

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    revoked = answer["metadata"].get("links_revoked_at")
    if revoked:
        click.echo(f"export {request_id}: links revoked at {revoked}; its files are deleted next")
    else:
        click.echo(f"export {request_id} is {answer['status']}: it has no live links")
