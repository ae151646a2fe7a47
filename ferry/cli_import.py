"""`ferry import …`: bring a user's objects from another provider into one of their buckets.

`start` creates the request through the same function the API uses; the copying is done by
whichever worker (`ferry serve` or `ferry worker`) picks it up. `status`, `cancel` and
`report` are the transfer's (ferry.cli_requests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ferry.cli_common import find_user, in_session, load, now, run
from ferry.cli_options import config_option
from ferry.cli_requests import add_follow_commands, summary
from transfer.spec import ON_CONFLICT

SOURCE_ENV = "FERRY_SOURCE_"


@click.group("import")
def import_() -> None:
    """Import a user's objects from another S3 provider, verified and resumable."""


@import_.command("start")
@config_option
@click.option("--user", "email", required=True, help="The owner's email.")
@click.option("--from-endpoint", default=None, help="The source's S3 endpoint URL.")
@click.option("--from-bucket", default=None, help="The source bucket.")
@click.option("--from-prefix", default="", help="Only keys under this prefix.")
@click.option("--from-region", default="us-east-1", show_default=True)
@click.option("--from-addressing-style", type=click.Choice(["path", "virtual"]), default="path")
@click.option(
    "--handoff",
    "handoff_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="A hand-off document (JSON) from the source, instead of the --from-* options.",
)
@click.option("--bucket", "target_bucket", default=None, help="The user's bucket to fill.")
@click.option("--prefix", "target_prefix", default="", help="Key prefix in that bucket.")
@click.option("--manifest-url", default=None, help="The source's ferry-manifest link.")
@click.option(
    "--on-conflict",
    type=click.Choice(ON_CONFLICT),
    default="skip_identical",
    show_default=True,
    help="What to do with an object that exists already in the bucket.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON.")
def start(
    config_path: str | None,
    email: str,
    from_endpoint: str | None,
    from_bucket: str | None,
    from_prefix: str,
    from_region: str,
    from_addressing_style: str,
    handoff_path: str | None,
    target_bucket: str | None,
    target_prefix: str,
    manifest_url: str | None,
    on_conflict: str,
    as_json: bool,
) -> None:
    """Start an import; without --handoff the source's keys come from
    FERRY_SOURCE_ACCESS_KEY_ID, FERRY_SOURCE_SECRET_ACCESS_KEY and (optionally)
    FERRY_SOURCE_SESSION_TOKEN."""
    from portability.imports.service import create_import_request

    body: dict[str, Any] = {
        "target": {"bucket": target_bucket, "prefix": target_prefix},
        "on_conflict": on_conflict,
    }
    if manifest_url:
        body["manifest_url"] = manifest_url
    if handoff_path:
        if from_endpoint or from_bucket:
            raise click.UsageError("give either --handoff or --from-endpoint/--from-bucket")
        try:
            body["handoff"] = json.loads(Path(handoff_path).read_text())
        except (OSError, ValueError) as exc:
            raise click.UsageError(f"{handoff_path}: not a JSON document ({exc})") from None
    else:
        if not from_endpoint or not from_bucket:
            raise click.UsageError("give --from-endpoint and --from-bucket (or --handoff)")
        access_key_id = os.environ.get(SOURCE_ENV + "ACCESS_KEY_ID", "")
        secret_access_key = os.environ.get(SOURCE_ENV + "SECRET_ACCESS_KEY", "")
        if not access_key_id or not secret_access_key:
            raise click.UsageError(
                f"set {SOURCE_ENV}ACCESS_KEY_ID and {SOURCE_ENV}SECRET_ACCESS_KEY "
                "to the source's credentials"
            )
        body["source"] = {
            "endpoint_url": from_endpoint,
            "region": from_region,
            "bucket": from_bucket,
            "prefix": from_prefix,
            "access_key_id": access_key_id,
            "secret_access_key": secret_access_key,
            "session_token": os.environ.get(SOURCE_ENV + "SESSION_TOKEN") or None,
            "addressing_style": from_addressing_style,
        }
    config = load(config_path)

    async def work(runtime: Any, session: Any) -> dict[str, Any]:
        user = await find_user(session, email)
        request = await create_import_request(
            session, runtime.master_key, user, body, now=now(), egress=runtime.egress
        )
        return summary(request)

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"import {answer['id']} is {answer['status']}")
    click.echo(f"follow it with: ferry import status {answer['id']} --follow")


add_follow_commands(import_, "import")
