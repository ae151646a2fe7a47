"""The dashboard in a real browser: Playwright drives Debian's chromium against `ferry serve`.

What a user would notice: signing in, issuing a token-free credential whose rclone snippet
pulls the folder when pasted into a shell (and is refused once revoked in the page), a zip
export followed to "ready", downloaded through the page's link and its links revoked with the
page's button (the gateway then refuses the link), a transfer followed to
its report, an admin revoking another user's key, and readable pages for a wrong key, an
expired session and a form without its CSRF token. Every page is photographed at 375 and
1280 px into tests/screenshots/ and checked for horizontal overflow.

Without chromium or the playwright package the tests skip, except under CI=true.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from ferry.config import SecurityConfig
from ferry.masterkey import load_master_key
from portability.dashboard.sessions import SESSION_COOKIE, SessionCodec
from tests.fixtures.servers import S3Server
from tests.support.ferry import Ferry, http, served_demo

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
WIDTHS = (375, 1280)
BIN = str(Path(sys.executable).parent)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (required under CI=true)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    # The transfer test's target is SeaweedFS on loopback, which the egress policy refuses
    # unless it is listed.
    with served_demo(
        tmp_path_factory.mktemp("dashboard"), database_url, egress_allowed_cidrs="127.0.0.0/8"
    ) as ferry:
        yield ferry


@pytest.fixture
def page(browser: Any, served: Ferry) -> Iterator[Any]:
    context = browser.new_context(base_url=served.api_url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        yield page
    finally:
        context.close()


def shoot(page: Any, name: str) -> None:
    """Screenshots at both widths; neither may scroll sideways."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(50)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1], f"{name} overflows at {width}px: {overflow}"
    page.set_viewport_size({"width": 1280, "height": 900})


def login(page: Any, key: str) -> None:
    page.goto("/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/$"))


def rclone(snippet: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["RCLONE_RETRIES"] = "1"  # a refusal should fail fast, not be retried three times
    env["RCLONE_LOW_LEVEL_RETRIES"] = "1"
    return subprocess.run(
        ["bash", "-c", snippet], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_login_page_and_wrong_key(page: Any) -> None:
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    shoot(page, "login")
    page.get_by_label("API key").fill("fk_not-a-real-key")
    response_status: list[int] = []
    page.on(
        "response",
        lambda r: response_status.append(r.status) if r.request.method == "POST" else None,
    )
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert "That API key was not accepted" in page.locator("[role=alert]").inner_text()
    assert 401 in response_status
    assert "Traceback" not in page.content()
    shoot(page, "login-wrong-key")


def test_token_free_credential_pulled_with_the_rclone_snippet_then_revoked(
    page: Any, served: Ferry, tmp_path: Path
) -> None:
    login(page, served.demo_key("alice@example.com"))
    shoot(page, "overview-first-sight")
    page.get_by_role("link", name="Credentials", exact=True).click()
    page.get_by_label("Bucket").select_option("alice-data")
    docs = page.get_by_label(re.compile(r"^docs/"))
    counted = re.search(r"(\d+) objects", docs.locator("xpath=..").inner_text())
    assert counted is not None
    expected = int(counted.group(1))
    docs.check()
    page.get_by_label("Token-free key").check()
    page.get_by_label("Valid for").select_option(label="1 hour")
    page.get_by_label("Label").fill("to new-provider")
    shoot(page, "credentials-form")
    page.get_by_role("button", name="Issue credential").click()
    page.wait_for_url(re.compile(r"/credentials$"))
    assert "Copy the secret now" in page.content()
    snippet = page.locator("#snippet-rclone-1").inner_text()
    access_key_id = page.locator("#akid-1").inner_text()
    assert "SESSION_TOKEN" not in snippet and "rclone copy" in snippet
    assert page.locator("button[data-copy='snippet-rclone-1']").is_visible()
    shoot(page, "credential-issued")

    (tmp_path / "first").mkdir()
    pulled = rclone(snippet, tmp_path / "first")
    assert pulled.returncode == 0, pulled.stderr
    files = [p for p in (tmp_path / "first" / "alice-data" / "docs").rglob("*") if p.is_file()]
    assert len(files) == expected > 0

    page.goto("/credentials")
    row = page.locator(f"tr[data-access-key='{access_key_id}']")
    assert "to new-provider" in row.inner_text()
    assert "active" in row.inner_text()
    shoot(page, "credentials-list")
    row.get_by_role("button", name=f"Revoke {access_key_id}").click()
    page.wait_for_url(re.compile(r"/credentials\?revoked="))
    assert "revoked" in page.locator(f"tr[data-access-key='{access_key_id}']").inner_text()

    # A revocation takes effect everywhere within a second: the gateway trusts what it read
    # of a key for 0.5 s. rclone started at once got some files in one CI run.
    time.sleep(1)
    (tmp_path / "second").mkdir()
    refused = rclone(snippet, tmp_path / "second")
    assert refused.returncode != 0
    assert not list((tmp_path / "second").rglob("*.txt"))


def test_zip_export_becomes_ready_and_downloads(page: Any, served: Ferry, tmp_path: Path) -> None:
    login(page, served.demo_key("bob@example.com"))
    page.goto("/requests/new")
    shoot(page, "new-request")
    page.get_by_label(re.compile("^An archive of everything")).check()
    page.get_by_label("zip", exact=True).check()
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/requests/[0-9a-f-]{36}$"))
    # The page's script polls and reloads when the state changes; wait for the link.
    page.locator("a[data-download]").first.wait_for(timeout=120_000)
    assert page.locator("[data-field=status]").inner_text() == "ready"
    shoot(page, "request-ready")
    with page.expect_download(timeout=60_000) as info:
        page.locator("a[data-download]").first.click()
    target = tmp_path / "export.zip"
    info.value.save_as(target)
    subprocess.run(["unzip", "-tq", str(target)], check=True)
    with zipfile.ZipFile(target) as archive:
        assert any(n.endswith("bagit.txt") for n in archive.namelist())

    # The owner kills the links from the page; the one just used is refused from then on.
    link = page.locator("a[data-download]").first.get_attribute("href")
    assert link and "X-Amz-Signature" in link
    page.get_by_role("button", name="Revoke download links").click()
    page.get_by_text("Download links revoked").wait_for()
    assert page.locator("a[data-download]").count() == 0
    shoot(page, "request-links-revoked")
    deadline = time.monotonic() + 3  # every gateway refuses a revoked key within a second
    while (status := _status(link)) == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 403
    page.goto("/")
    assert page.locator(".request .status-ready").count() >= 1
    shoot(page, "overview")


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_transfer_followed_to_its_report(page: Any, served: Ferry, seaweedfs_b: S3Server) -> None:
    target = seaweedfs_b.new_bucket("dash-transfer")
    login(page, served.demo_key("bob@example.com"))
    page.goto("/requests/new")
    page.get_by_label(re.compile("^Transfer to another provider")).check()
    page.get_by_label("From your bucket").select_option("bob-data")
    page.get_by_label(re.compile("^Only this prefix")).fill("docs/")
    page.get_by_label("Destination endpoint URL").fill(seaweedfs_b.endpoint_url)
    page.get_by_label("Destination bucket").fill(target)
    page.get_by_label(re.compile("^Destination prefix")).fill("moved/")
    page.get_by_label("Access key ID").fill(seaweedfs_b.access_key_id)
    page.get_by_label("Secret access key").fill(seaweedfs_b.secret_access_key)
    page.get_by_role("button", name="Test connection").click()
    check = page.locator("[data-field=check]")
    check.filter(has_text="Connected").wait_for()
    assert "is empty" in check.inner_text()
    shoot(page, "new-transfer")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(re.compile(r"/requests/[0-9a-f-]{36}$"))
    page.get_by_role("heading", name="Report").wait_for(timeout=120_000)
    assert page.locator("[data-field=status]").inner_text() == "completed"
    report = page.locator("section[aria-labelledby=report-heading]").inner_text()
    listed = seaweedfs_b.client().list_objects_v2(Bucket=target, Prefix="moved/")
    assert f"{listed['KeyCount']} in total: {listed['KeyCount']} copied" in report
    shoot(page, "transfer-report")


def test_admin_revokes_another_users_credential(page: Any, served: Ferry) -> None:
    status, issued = http(
        "POST",
        served.api_url + "/api/portability/credentials",
        body={"bucket": "bob-data", "prefixes": ["docs/"], "label": "admin test"},
        token=served.demo_key("bob@example.com"),
    )
    assert status == 201, issued
    s3 = boto3.client(
        "s3",
        endpoint_url=served.gateway_url,
        region_name="us-east-1",
        aws_access_key_id=issued["access_key_id"],
        aws_secret_access_key=issued["secret_access_key"],
        aws_session_token=issued["session_token"],
        config=BotoConfig(retries={"max_attempts": 1}),
    )
    assert s3.list_objects_v2(Bucket="bob-data", Prefix="docs/")["KeyCount"] > 0

    login(page, served.demo_key("admin@example.com"))
    page.goto("/admin")
    shoot(page, "admin")
    row = page.locator(f"tr[data-access-key='{issued['access_key_id']}']")
    assert "bob@example.com" in row.inner_text()
    row.get_by_role("button").click()
    page.wait_for_url(re.compile(r"/admin\?notice=revoked$"))
    revoked_at = time.monotonic()
    assert page.locator(f"tr[data-access-key='{issued['access_key_id']}']").count() == 0
    # The gateway refuses the key within a second of the click...
    while True:
        try:
            s3.list_objects_v2(Bucket="bob-data", Prefix="docs/")
        except ClientError:
            break
        assert time.monotonic() - revoked_at < 1.0, "still accepted a second after revoke"
        time.sleep(0.05)
    # ...and aws-cli, as a user would run it, is refused.
    aws = subprocess.run(
        [
            "aws",
            "s3",
            "ls",
            "s3://bob-data/docs/",
            "--endpoint-url",
            served.gateway_url,
        ],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "AWS_ACCESS_KEY_ID": issued["access_key_id"],
            "AWS_SECRET_ACCESS_KEY": issued["secret_access_key"],
            "AWS_SESSION_TOKEN": issued["session_token"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_MAX_ATTEMPTS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert aws.returncode != 0
    assert "InvalidAccessKeyId" in aws.stderr

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Access key ID").fill(issued["access_key_id"])
    page.get_by_role("button", name="Search").click()
    entries = page.locator("table.cards tbody tr")
    assert entries.count() >= 3  # issued, listed through the gateway, revoked
    text = page.locator("table.cards").inner_text()
    assert "credentials.revoke" in text and "ListObjectsV2" in text
    shoot(page, "audit")


def test_missing_csrf_token_gets_a_clear_page(page: Any, served: Ferry) -> None:
    login(page, served.demo_key("alice@example.com"))
    page.goto("/credentials")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_role("button", name="Issue credential").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="This form could not be accepted").is_visible()
    assert "Nothing was changed" in page.content()
    shoot(page, "csrf-missing")


def test_expired_session_gets_a_clear_page(page: Any, served: Ferry) -> None:
    master_key = load_master_key(
        SecurityConfig(master_key_file=served.env["FERRY_SECURITY_MASTER_KEY_FILE"]), create=False
    )
    yesterday = datetime.now(UTC) - timedelta(days=1)
    old = SessionCodec(master_key, clock=lambda: yesterday)
    cookie = old.dumps(old.new("00000000-0000-0000-0000-000000000000"))
    page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": served.api_url}])
    page.goto("/credentials")
    assert "Your session has expired" in page.locator("[role=status]").inner_text()
    assert page.get_by_label("API key").is_visible()
    shoot(page, "session-expired")
