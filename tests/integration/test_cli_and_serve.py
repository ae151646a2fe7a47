"""The `ferry` command as a user runs it: real processes, a real database, real ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

FERRY = str(Path(sys.executable).with_name("ferry"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ferry-cli")


@pytest.fixture(scope="module")
def env(database_url: str, workdir: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}
    environ.update(
        FERRY_DATABASE_URL=database_url,
        FERRY_STORAGE_ROOT=str(workdir / "storage"),
        FERRY_SECURITY_MASTER_KEY_FILE=str(workdir / "master.key"),
        FERRY_GATEWAY_LISTEN=f"127.0.0.1:{free_port()}",
        FERRY_API_LISTEN=f"127.0.0.1:{free_port()}",
    )
    return environ


def ferry(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FERRY, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert text in lines[0]


def test_users_and_buckets(env: dict[str, str]) -> None:
    created = ferry(env, "users", "create", "carol@example.com", "--name", "Carol", "--json")
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    assert answer["email"] == "carol@example.com"
    assert answer["api_key"].startswith("fk_")

    assert_one_line_error(ferry(env, "users", "create", "carol@example.com"), "exists already")
    assert_one_line_error(ferry(env, "users", "create", "not-an-email"), "not an email address")

    made = ferry(env, "buckets", "create", "carol-data", "--owner", "carol@example.com")
    assert made.returncode == 0, made.stderr
    assert_one_line_error(
        ferry(env, "buckets", "create", "carol-data", "--owner", "carol@example.com"),
        "exists already",
    )
    assert_one_line_error(
        ferry(env, "buckets", "create", "Bad_Name", "--owner", "carol@example.com"),
        "invalid bucket name",
    )
    assert_one_line_error(
        ferry(env, "buckets", "create", "x-data", "--owner", "nobody@example.com"), "no user"
    )


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"FERRY_STORAGE_BACKEND": "ftp"}, "unknown backend 'ftp'"),
        ({"FERRY_DATABASE_URL": "mysql://x"}, "database"),
        ({"FERRY_STORAGE_BACKEND": "s3", "FERRY_STORAGE_ENDPOINT_URL": "nope"}, "endpoint_url"),
    ],
)
def test_bad_settings_are_one_line(
    env: dict[str, str], overrides: dict[str, str], text: str
) -> None:
    assert_one_line_error(ferry({**env, **overrides}, "users", "create", "d@example.com"), text)


def test_malformed_config_file(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database\n")
    assert_one_line_error(ferry(env, "serve", "--config", str(bad)), "not valid TOML")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    proc = subprocess.Popen(
        [FERRY, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    api = "http://" + env["FERRY_API_LISTEN"]
    gateway = "http://" + env["FERRY_GATEWAY_LISTEN"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(api + "/api/health")[0] in (200, 503):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"ferry serve did not start: {proc.communicate()[0]}")
    try:
        yield proc, api, gateway
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_then_serve_then_sigterm(
    env: dict[str, str], served: tuple[subprocess.Popen[str], str, str]
) -> None:
    proc, api, gateway = served
    demo = ferry(env, "demo", "--keys-file", env["FERRY_STORAGE_ROOT"] + "-keys.txt")
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.count("fk_") == 3
    assert_one_line_error(ferry(env, "demo"), "exists already")
    _alice_has_a_history(api, Path(env["FERRY_STORAGE_ROOT"] + "-keys.txt"))

    status, body = _get(api + "/api/health")
    assert status == 200, body
    assert json.loads(body) == {"status": "ok", "database": {"ok": True}, "storage": {"ok": True}}

    status, body = _get(gateway + "/alice-data/docs/notes-0001.txt")
    assert status == 403
    assert ET.fromstring(body).findtext("Code") == "AccessDenied"

    status, body = _get(api + "/api/nothing-here")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"

    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, output
    assert "ferry stopped" in output
    assert "Traceback" not in output


def _alice_has_a_history(api: str, keys_file: Path) -> None:
    """The demo leaves alice one finished export and one finished transfer, and shows her
    a person's folders, not test keys."""
    keys = dict(line.split() for line in keys_file.read_text().splitlines())
    request = urllib.request.Request(api + "/api/portability/requests")  # noqa: S310
    request.add_header("authorization", f"Bearer {keys['alice@example.com']}")
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            listed = json.loads(response.read())["requests"]
        kinds = sorted((r["request_type"], r["status"]) for r in listed)
        # `ferry serve`'s worker may have taken the demo's export: it is ready soon either way.
        if kinds == [("export", "ready"), ("transfer", "completed")]:
            break
        assert time.monotonic() < deadline, kinds
        time.sleep(0.2)
    export = next(r for r in listed if r["request_type"] == "export")
    assert export["metadata"]["parts"][0]["size"] > 0


def test_busy_port_is_one_line(env: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = ferry({**env, "FERRY_GATEWAY_LISTEN": f"127.0.0.1:{port}"}, "serve")
    assert_one_line_error(result, "cannot listen on")
