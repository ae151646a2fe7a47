"""The `ferry` command line: one click group; user errors are one line and exit code 1."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from db.exceptions import DatabaseError
from ferry.cli_common import find_user, in_session, load, now, run
from ferry.cli_options import config_option
from ferry.config import Config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ferry.runtime import Runtime
    from portability.credentials import GatewayAddress

T = TypeVar("T")


@click.group()
@click.version_option(package_name="ferry")
def main() -> None:
    """Ferry: take your data elsewhere (pull credentials, push copies, exports)."""
    # Everything a ferry process creates (the SQLite database and the -wal/-journal files
    # SQLite makes itself, storage, mail, keys, logs written to files) is its owner's only.
    # Ferry's own code also creates files 0600 and directories 0700 explicitly; the umask
    # covers what libraries create.
    os.umask(0o077)


@main.command()
@config_option
@click.option("--no-worker", is_flag=True, help="Do not run the embedded export/transfer worker.")
@click.option("--gateway-only", is_flag=True, help="Serve the S3 gateway only.")
@click.option("--api-only", is_flag=True, help="Serve the API and dashboard only.")
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=None,
    help="Serving processes on the same ports ([server] processes; default 1).",
)
@click.option("--child", type=int, default=None, hidden=True)
@click.option("--listen-fds", default="", hidden=True)
@click.option("--shared-dir", default="", hidden=True)
def serve(
    config_path: str | None,
    no_worker: bool,
    gateway_only: bool,
    api_only: bool,
    processes: int | None,
    child: int | None,
    listen_fds: str,
    shared_dir: str,
) -> None:
    """Serve the S3 gateway and the API until SIGTERM."""
    if gateway_only and api_only:
        raise click.UsageError("--gateway-only and --api-only exclude each other")
    config = load(config_path)
    count = processes or config.server.processes
    if child is None and count > 1:
        from ferry.supervisor import supervise

        code = supervise(
            config,
            processes=count,
            config_path=config_path,
            gateway=not api_only,
            api=not gateway_only,
            worker=not no_worker,
        )
        sys.exit(code)
    # Imported here, not above: a supervisor serves nothing and needs none of it.
    import socket

    from ferry.serve import serve as serve_

    inherited = {}
    for item in filter(None, listen_fds.split(",")):
        name, _, fd = item.partition("=")
        inherited[name] = socket.socket(fileno=int(fd))
    run(
        serve_(
            config,
            gateway=not api_only,
            api=not gateway_only,
            worker=not no_worker,
            inherited=inherited,
            shared_dir=shared_dir,
            banner=not child,
        )
    )


@main.command()
@config_option
def worker(config_path: str | None) -> None:
    """Run the export and transfer workers until SIGTERM (no listeners)."""
    from ferry.serve import serve as serve_

    run(serve_(load(config_path), gateway=False, api=False, worker=True))


@main.command()
@config_option
def migrate(config_path: str | None) -> None:
    """Create or upgrade the database schema (alembic upgrade head)."""
    from db.migrate import upgrade

    config = load(config_path)
    try:
        upgrade(config.database.url)
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise click.ClickException(f"database: {first}") from None
    click.echo("database is at the latest schema")


@main.command()
@config_option
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False),
    default="var/demo-keys.txt",
    show_default=True,
    help="Also write the demo API keys here (mode 0600).",
)
def demo(config_path: str | None, keys_file: str) -> None:
    """Create demo users, buckets, files, usage, billing and audit rows; print the API keys."""
    from ferry.demo import create_demo

    config = load(config_path)
    run(create_demo(config, keys_file=keys_file, echo=click.echo))


@main.group()
def users() -> None:
    """Manage users."""


@users.command("create")
@config_option
@click.argument("email")
@click.option("--name", default=None)
@click.option("--admin", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print {id, email, api_key} as JSON.")
def users_create(
    config_path: str | None, email: str, name: str | None, admin: bool, as_json: bool
) -> None:
    """Create a user and print a new API key (shown once)."""
    from portability.accounts import create_user

    async def work(_: Runtime, session: AsyncSession) -> tuple[str, str, str]:
        user, key = await create_user(session, email, name=name, is_admin=admin)
        return str(user.id), user.email, key

    user_id, email, key = run(in_session(load(config_path), work))
    if as_json:
        click.echo(json.dumps({"id": user_id, "email": email, "api_key": key}))
    else:
        click.echo(f"created {email} ({user_id})\nAPI key (shown once): {key}")


@main.group()
def buckets() -> None:
    """Manage buckets."""


@buckets.command("create")
@config_option
@click.argument("name")
@click.option("--owner", required=True, help="Owner's email.")
@click.option(
    "--backend-bucket", default=None, help="Bucket in the storage backend (default NAME)."
)
@click.option("--backend-prefix", default="", help="Key prefix in the backend bucket.")
def buckets_create(
    config_path: str | None,
    name: str,
    owner: str,
    backend_bucket: str | None,
    backend_prefix: str,
) -> None:
    """Create a bucket owned by a user (and its backend bucket if missing)."""
    from portability.buckets import create_bucket

    async def work(runtime: Runtime, session: AsyncSession) -> str:
        bucket = await create_bucket(
            session,
            runtime.storage,
            name,
            owner_email=owner,
            backend_bucket=backend_bucket,
            backend_prefix=backend_prefix,
        )
        return f"created bucket {bucket.name} -> {bucket.backend_bucket}/{bucket.backend_prefix}"

    click.echo(run(in_session(load(config_path), work)))


@main.group()
def creds() -> None:
    """Issue, list and revoke pull credentials."""


VIA_CLI = {"via": "cli"}  # in the audit event's details


def _endpoint(config: Config) -> GatewayAddress:
    from portability.credentials import GatewayAddress

    return GatewayAddress(config.gateway.public_url, config.gateway.region)


@creds.command("issue")
@config_option
@click.option("--user", "email", required=True, help="The owner's email.")
@click.option("--bucket", required=True)
@click.option("--prefix", "prefixes", multiple=True, help="Key prefix (repeatable; default all).")
@click.option("--ttl", type=int, default=3600, show_default=True, help="Seconds, 900..604800.")
@click.option("--no-session-token", is_flag=True, help="A key that works without a token.")
@click.option("--cidr", "cidrs", multiple=True, help="Allowed client network (repeatable).")
@click.option("--label", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the REST answer as JSON.")
def creds_issue(
    config_path: str | None,
    email: str,
    bucket: str,
    prefixes: tuple[str, ...],
    ttl: int,
    no_session_token: bool,
    cidrs: tuple[str, ...],
    label: str | None,
    as_json: bool,
) -> None:
    """Issue a read-only credential for a user's bucket; the secret is shown once."""
    from portability.credentials import issue_for_user
    from sts.issue import IssueRequest

    config = load(config_path)

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        user = await find_user(session, email)
        request = IssueRequest(
            prefixes=prefixes or ("",),
            ttl_seconds=ttl,
            session_token=not no_session_token,
            allowed_cidrs=cidrs,
            label=label,
            max_ttl_seconds=config.sts.max_ttl_seconds,
        )
        return await issue_for_user(
            session,
            runtime.master_key,
            user,
            bucket,
            request,
            endpoint=_endpoint(config),
            now=now(),
            actor="admin",
        )

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"access key id:     {answer['access_key_id']}")
    click.echo(f"secret access key: {answer['secret_access_key']}   (shown once)")
    if answer["session_token"]:
        click.echo(f"session token:     {answer['session_token']}")
    click.echo(f"endpoint:          {answer['endpoint_url']}  (region {answer['region']})")
    click.echo(f"scope:             s3://{answer['bucket']}/ {answer['prefixes']}, read-only")
    click.echo(f"expires:           {answer['expires_at']}")
    click.echo("\naws-cli:\n" + answer["snippets"]["aws_cli"])


@creds.command("list")
@config_option
@click.option("--user", "email", default=None)
@click.option("--active", is_flag=True, help="Only credentials that still work.")
@click.option("--json", "as_json", is_flag=True)
def creds_list(config_path: str | None, email: str | None, active: bool, as_json: bool) -> None:
    """List credentials (never their secrets) with what was pulled through them."""
    from portability.credentials import describe
    from sts.issue import list_credentials

    config = load(config_path)

    async def work(runtime: Runtime, session: AsyncSession) -> list[dict[str, Any]]:
        user_id = (await find_user(session, email)).id if email else None
        at = now()
        rows = await list_credentials(session, now=at, user_id=user_id, active_only=active)
        return [describe(c, b, _endpoint(config), at) for c, b in rows]

    rows = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ACCESS KEY ID':<21}{'STATUS':<9}{'BUCKET/PREFIXES':<40}{'EXPIRES':<22}PULLED")
    for r in rows:
        scope = r["bucket"] + "/" + ",".join(r["prefixes"])
        pulled = f"{r['pulled']['objects']} objects, {r['pulled']['bytes']} B"
        click.echo(
            f"{r['access_key_id']:<21}{r['status']:<9}{scope:<40}{r['expires_at']:<22}{pulled}"
        )


@creds.command("revoke")
@config_option
@click.argument("access_key_id", required=False)
@click.option("--user", "email", default=None, help="Revoke every credential of this user.")
def creds_revoke(config_path: str | None, access_key_id: str | None, email: str | None) -> None:
    """Revoke one credential, or all of a user's; effective everywhere within a second."""
    from portability.credentials import revoke_credential, revoke_user_credentials

    if bool(access_key_id) == bool(email):
        raise click.UsageError("give an ACCESS_KEY_ID or --user EMAIL")
    config = load(config_path)

    async def work(runtime: Runtime, session: AsyncSession) -> str:
        # The services the API calls: the same checks, the same audit events.
        if email:
            user = await find_user(session, email)
            count = await revoke_user_credentials(session, user, now=now(), details=VIA_CLI)
            return f"revoked {count} credential(s) of {user.email}"
        assert access_key_id is not None
        await revoke_credential(session, access_key_id, now=now(), actor="admin", details=VIA_CLI)
        return f"revoked {access_key_id}"

    click.echo(run(in_session(config, work)))


@creds.command("rotate")
@config_option
@click.argument("access_key_id")
@click.option(
    "--grace",
    type=click.IntRange(0, 604_800),
    default=3600,
    show_default=True,
    help="Seconds the old secret keeps working (0: it stops at once).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def creds_rotate(config_path: str | None, access_key_id: str, grace: int, as_json: bool) -> None:
    """A new secret for the same key id and scope; the new secret is shown once."""
    from portability.credentials import rotate_for_user

    config = load(config_path)

    async def work(runtime: Runtime, session: AsyncSession) -> dict[str, Any]:
        answer = await rotate_for_user(
            session,
            runtime.master_key,
            None,
            access_key_id,
            grace_seconds=grace,
            endpoint=_endpoint(config),
            now=now(),
            actor="admin",
            details=VIA_CLI,
        )
        return {
            key: answer[key]
            for key in ("access_key_id", "secret_access_key", "previous_secret_valid_until")
        }

    answer = run(in_session(config, work))
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"new secret for {access_key_id} (shown once): {answer['secret_access_key']}")
    click.echo(f"the old secret works until {answer['previous_secret_valid_until']}")


def _register() -> None:
    # Command groups that live in their own modules, added here so `ferry --help` lists them.
    from ferry.cli_export import export
    from ferry.cli_import import import_
    from ferry.cli_transfer import transfer

    main.add_command(export)
    main.add_command(import_)
    main.add_command(transfer)


_register()
