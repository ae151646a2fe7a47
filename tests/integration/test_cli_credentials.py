"""`ferry creds rotate` and `revoke` go through the services the API calls: the same checks,
the same audit events (marked as the CLI's), the same states."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from db.engine import create_engine, session_factory
from db.models import AuditLog
from tests.support.ferry import Ferry


def audit(database_url: str, access_key_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    async def read() -> list[tuple[str, str, dict[str, Any]]]:
        engine = create_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.scalars(select(AuditLog).order_by(AuditLog.id))
                return [
                    (row.actor, row.action, row.details or {})
                    for row in rows
                    if (row.details or {}).get("access_key_id") == access_key_id
                ]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_rotate_and_revoke_through_the_services(database_url: str, tmp_path: Path) -> None:
    ferry = Ferry.create(tmp_path / "ferry", database_url)
    ferry.create_user("cli@example.com")
    ferry.run("buckets", "create", "cli-data", "--owner", "cli@example.com")
    issued = json.loads(
        ferry.run(
            "creds", "issue", "--user", "cli@example.com", "--bucket", "cli-data", "--json"
        ).stdout
    )
    key = issued["access_key_id"]

    rotated = json.loads(ferry.run("creds", "rotate", key, "--grace", "0", "--json").stdout)
    assert rotated["access_key_id"] == key
    assert rotated["secret_access_key"] not in ("", issued["secret_access_key"])
    assert rotated["previous_secret_valid_until"] is not None

    assert ferry.run("creds", "revoke", key).stdout.strip() == f"revoked {key}"
    listed = json.loads(ferry.run("creds", "list", "--json").stdout)
    assert [c["status"] for c in listed if c["access_key_id"] == key] == ["revoked"]
    missing = ferry.run("creds", "revoke", "FRYNOSUCHKEY00000000", check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr

    events = audit(database_url, key)
    assert [(actor, action) for actor, action, _ in events] == [
        ("admin", "credentials.issue"),
        ("admin", "credentials.rotate"),
        ("admin", "credentials.revoke"),
    ]
    assert events[1][2]["via"] == events[2][2]["via"] == "cli"
    assert events[1][2]["grace_seconds"] == 0
