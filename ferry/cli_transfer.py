"""`ferry transfer …`: start a push to another S3 endpoint, follow it, cancel it, read its report.

A click group for the composition root to attach (`main.add_command(transfer)`). `start`
creates the request through the same function the API uses; the copying is done by whichever
worker (`ferry serve` or `ferry worker`) picks the request up.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ferry.cli_common import find_user, in_session, load, now, run
from ferry.cli_options import config_option
from ferry.cli_requests import add_follow_commands, summary
from transfer.spec import CHECKSUMS

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
        return summary(request)

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"transfer {answer['id']} is {answer['status']}")
    click.echo(f"follow it with: ferry transfer status {answer['id']} --follow")


add_follow_commands(transfer, "transfer")
