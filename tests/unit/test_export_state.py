"""The export worker's typed metadata stores the JSON the API, dashboard and CLI read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from db.models import PortabilityRequest
from portability.exports.state import ExportState, Options, Progress, StoredFile
from portability.requests import new_request

NOW = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)


def _request(options: dict[str, object]) -> PortabilityRequest:
    return new_request(
        uuid.uuid4(), request_type="export", format="archive", options=options, now=NOW
    )


def test_a_new_request_loads_with_the_defaults_and_its_options() -> None:
    request = _request({"format": "archive", "archive_format": "tar.gz", "include": ["files"]})
    state = ExportState.load(request.meta)
    assert state.options == Options(archive_format="tar.gz", include=("files",))
    assert state.progress == Progress() and state.attempts == 0 and state.parts == []
    assert ExportState.load(_request({"format": "archive"}).meta).options == Options()


def test_storing_keeps_the_keys_the_worker_does_not_own() -> None:
    request = _request({"format": "json"})
    request.meta = {
        **(request.meta or {}),
        "notifications": {"export_ready": {"attempts": 0}},
        "credentials": [{"access_key_id": "FRYPULL", "bucket": "b"}],
        "links_revoked_at": "2026-12-05T00:00:00Z",
    }
    before = dict(request.meta)
    state = ExportState.load(request.meta)
    state.attempts = 1
    state.started_at = NOW
    state.store(request)
    assert request.meta == {**before, "attempts": 1, "started_at": "2026-12-04T10:00:00Z"}
    assert state.links_revoked_at == datetime(2026, 12, 5, tzinfo=UTC)
    assert state.pull_credentials == ("FRYPULL",)


def test_a_ready_export_is_stored_as_the_answers_show_it() -> None:
    request = _request({"format": "json"})
    state = ExportState.load(request.meta)
    state.progress = Progress(10, 10, 2, 2, 5, 0)
    state.parts = [StoredFile("personal-data.json", "r/personal-data.json", 10, "ab")]
    state.link_credential = "FRYLINK"
    state.report = {"objects": 2}
    state.store(request)
    meta = request.meta or {}
    assert meta["progress"] == {
        "bytes_done": 10,
        "bytes_total": 10,
        "objects_done": 2,
        "objects_total": 2,
        "bytes_per_second": 5,
        "eta_seconds": 0,
    }
    assert meta["parts"] == [
        {"name": "personal-data.json", "key": "r/personal-data.json", "size": 10, "sha256": "ab"}
    ]
    assert "error" not in meta and "manifest_key" not in meta and "purged_at" not in meta
    again = ExportState.load(meta)
    assert again == state
