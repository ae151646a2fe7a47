"""The embedded default as `make run` leaves it: everything under var/ is its owner's only.

Real processes in a fresh directory with no config at all (`ferry migrate`, `ferry demo`,
`ferry serve`), started under a permissive umask (022), as a login shell gives. An export is
asked for, built by the served worker, mailed to `var/outbox/` and downloaded through the
gateway; then, with the server stopped, every file under var/ must be 0600 and every
directory 0700, and neither the SQLite files, the outbox nor the server's log may hold a
working link.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.export_stack import fetch
from tests.support.ferry import FERRY, free_port, http


def _ferry(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FERRY, *args],
        env=env,
        cwd=cwd,
        umask=0o022,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _wait_ready(api: str, key: str, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, answer = http("GET", f"{api}/api/portability/requests/{request_id}", token=key)
        assert status == 200, answer
        if answer["status"] not in ("pending", "processing"):
            return dict(answer)
        time.sleep(0.5)
    raise AssertionError(f"export {request_id} was not built in time")


def _wait_listening(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "ferry serve exited"
        assert time.monotonic() < deadline, "ferry serve did not start"
        try:
            if http("GET", url)[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.2)


def test_everything_under_var_is_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "install"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    gateway, api = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env.update(
        FERRY_GATEWAY_LISTEN=gateway,
        FERRY_GATEWAY_PUBLIC_URL=f"http://{gateway}",
        FERRY_API_LISTEN=api,
        FERRY_API_PUBLIC_URL=f"http://{api}",
        FERRY_LOG_FORMAT="text",
    )
    for args in (("migrate",), ("demo",)):
        done = _ferry(env, home, *args)
        assert done.returncode == 0, done.stderr
    keys = dict(line.split() for line in (home / "var" / "demo-keys.txt").read_text().splitlines())
    alice = keys["alice@example.com"]

    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [FERRY, "serve"], env=env, cwd=home, umask=0o022, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_listening(f"http://{api}/api/health", serve)
        status, created = http(
            "POST",
            f"http://{api}/api/portability/export",
            body={"format": "archive", "archive_format": "zip", "include": ["personal"]},
            token=alice,
        )
        assert status == 202, created
        done = _wait_ready(f"http://{api}", alice, created["id"])
        assert done["status"] == "ready", done
        assert fetch(done["export_url"], tmp_path / "export.zip") == 200
        page = f"http://{api}/requests/{created['id']}".encode()
        deadline = time.monotonic() + 30
        # `ferry demo` mailed about its own export too: wait for the mail about this one.
        while not any(page in m.read_bytes() for m in (home / "var" / "outbox").glob("*.eml")):
            assert time.monotonic() < deadline, "no mail about the export in the outbox"
            time.sleep(0.2)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()

    var = home / "var"
    wrong = {}
    for path in [var, *var.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            wrong[str(path.relative_to(home))] = oct(mode)
    assert not wrong, f"readable beyond their owner: {wrong}"
    # ... and what was checked is what a user would worry about.
    names = {str(p.relative_to(var)) for p in var.rglob("*")}
    assert {"ferry.db", "master.key", "demo-keys.txt", "outbox"} <= names
    assert any(n.endswith("/index.sqlite3") for n in names)
    assert any("/data/" in n and (var / n).is_file() for n in names)  # object bodies
    assert any(n.endswith(".eml") for n in names)

    database = b"".join(p.read_bytes() for p in var.glob("ferry.db*"))
    assert b"X-Amz-Signature" not in database
    # The log saw the download (the gateway's access line) but not the link's signature.
    served_log = (tmp_path / "serve.log").read_bytes()
    assert b"GetObject" in served_log and b"X-Amz-Signature" not in served_log
    mails = [mail.read_bytes() for mail in (var / "outbox").glob("*.eml")]
    assert all(b"X-Amz-Signature" not in mail for mail in mails)
    assert any(page in mail for mail in mails)
