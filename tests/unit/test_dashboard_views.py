"""What the dashboard pages show of sizes, times and a request's state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from portability.dashboard.app import UserError
from portability.dashboard.credential_pages import issue_request_from
from portability.dashboard.forms import Form
from portability.dashboard.request_pages import view
from portability.dashboard.views import countdown, duration, human_bytes, percent

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("size", "text"),
    [(None, "\u2013"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**3, "5.0 GiB")],
)
def test_sizes(size: int | None, text: str) -> None:
    assert human_bytes(size) == text


def test_countdown_and_durations() -> None:
    assert countdown("2026-12-04T10:00:00Z", NOW) == "in 7 d 0 h"
    assert countdown("2026-11-27T11:30:00Z", NOW) == "in 1 h 30 min"
    assert countdown("2026-11-27T09:59:59Z", NOW) == "expired"
    assert countdown(None, NOW) == "\u2013"
    assert duration(75) == "1 min 15 s"


def test_percent_is_bounded() -> None:
    assert percent(5, 10) == 50
    assert percent(5, 0) == 0
    assert percent(20, 10) == 100


def _resource(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "r1",
        "request_type": "export",
        "status": "processing",
        "format": "archive",
        "export_url": None,
        "expires_at": None,
        "transfer_destination": None,
        "created_at": "2026-11-27T09:00:00Z",
        "completed_at": None,
        "metadata": {
            "options": {"archive_format": "zip"},
            "progress": {"bytes_done": 25, "bytes_total": 100},
        },
    }
    base.update(changes)
    return base


def test_a_running_export() -> None:
    shown = view(_resource(), NOW)
    assert shown["title"] == "Archive export (zip)"
    assert shown["percent"] == 25 and shown["active"] and shown["downloads"] == []


def test_download_links_only_while_they_live() -> None:
    meta = {"parts": [{"url": "http://gw/a", "size": 10}, {"url": "http://gw/b", "size": 5}]}
    ready = _resource(status="ready", expires_at="2026-12-01T00:00:00Z", metadata=meta)
    assert [d["label"] for d in view(ready, NOW)["downloads"]] == ["Part 1 of 2", "Part 2 of 2"]
    gone = _resource(status="ready", expires_at="2026-11-27T09:00:00Z", metadata=meta)
    assert view(gone, NOW)["downloads"] == []


def test_a_transfer_is_named_by_its_destination() -> None:
    shown = view(
        _resource(
            request_type="transfer",
            format=None,
            transfer_destination={"endpoint_url": "https://s3.example.com", "bucket": "b"},
        ),
        NOW,
    )
    assert shown["title"] == "Transfer to b on s3.example.com"


def test_the_issue_form_takes_prefixes_only_from_the_chosen_bucket() -> None:
    form = Form(
        [
            ("bucket", "mine"),
            ("prefix:mine", "docs/"),
            ("prefix:other", "secret/"),
            ("other_prefixes", "photos/2024/\n\n"),
            ("ttl_seconds", "900"),
            ("token_free", "on"),
            ("allowed_cidrs", "203.0.113.0/24, 198.51.100.7/32"),
        ]
    )
    bucket, request = issue_request_from(form, ["mine", "other"])
    assert bucket == "mine"
    assert request.prefixes == ("docs/", "photos/2024/")
    assert request.session_token is False and request.ttl_seconds == 900
    assert request.allowed_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    _, default = issue_request_from(Form([("bucket", "other")]), ["mine", "other"])
    assert default.prefixes == ("",) and default.session_token is True
    with pytest.raises(UserError):
        issue_request_from(Form([("bucket", "not-mine")]), ["mine"])
