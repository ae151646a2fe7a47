"""`ferry export start|status` against a real database, built by the export worker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from db.engine import create_engine, session_factory
from ferry.cli_export import export
from ferry.config import load_config
from ferry.masterkey import load_master_key
from portability.exports.settings import ExportSettings
from portability.exports.worker import ExportWorker
from storage.local import LocalStorage
from tests.support.ferry import Ferry


async def _work(env: dict[str, str]) -> bool:
    config = load_config(None, env)
    engine = create_engine(config.database.url)
    storage = LocalStorage(Path(config.storage.root))
    try:
        worker = ExportWorker(
            sessions=session_factory(engine),
            storage=storage,
            master_key=load_master_key(config.security),
            settings=ExportSettings(gateway_url=config.gateway.public_url),
        )
        return await worker.run_once()
    finally:
        await storage.close()
        await engine.dispose()


def test_start_and_follow(database_url: str, tmp_path: Path) -> None:
    ferry = Ferry.create(tmp_path, database_url)
    ferry.create_user("carol@example.com")
    runner = CliRunner()
    started = runner.invoke(
        export,
        [
            "start",
            "--user",
            "carol@example.com",
            "--format",
            "archive",
            "--archive-format",
            "zip",
            "--json",
        ],
        env=ferry.env,
    )
    assert started.exit_code == 0, started.output
    request = json.loads(started.output)
    assert request["status"] == "pending" and request["format"] == "archive"
    assert asyncio.run(_work(ferry.env))
    shown = runner.invoke(export, ["status", request["id"], "--follow"], env=ferry.env)
    assert shown.exit_code == 0, shown.output
    assert "status:  ready" in shown.output
    assert ".zip" in shown.output and "X-Amz-Signature=" in shown.output

    bad = runner.invoke(export, ["status", "not-an-id"], env=ferry.env)
    assert bad.exit_code == 1 and "not a request id" in bad.output
    nobody = runner.invoke(
        export, ["start", "--user", "nobody@example.com", "--format", "json"], env=ferry.env
    )
    assert nobody.exit_code == 1 and "no user" in nobody.output
    wrong = runner.invoke(
        export,
        ["start", "--user", "carol@example.com", "--format", "json", "--archive-format", "zip"],
        env=ferry.env,
    )
    assert wrong.exit_code == 2


def test_revoking_the_links_of_an_export_still_being_built_is_one_line(
    database_url: str, tmp_path: Path
) -> None:
    ferry = Ferry.create(tmp_path, database_url)
    ferry.create_user("dan@example.com")
    runner = CliRunner()
    started = runner.invoke(
        export, ["start", "--user", "dan@example.com", "--format", "json", "--json"], env=ferry.env
    )
    assert started.exit_code == 0, started.output
    request = json.loads(started.output)
    early = runner.invoke(export, ["revoke-links", request["id"]], env=ferry.env)
    assert early.exit_code == 1
    assert "still being built" in early.output and "Traceback" not in early.output
