"""How long a link signed on demand may live: never past the export, the credential or the
configured link life, and not at all once the credential is revoked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from db.models import Credential, PortabilityRequest
from portability.exports.downloads import link_seconds
from portability.exports.links import LinkSigner
from portability.exports.settings import WEEK, ExportSettings

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _request(expires_in: float | None) -> PortabilityRequest:
    return PortabilityRequest(
        id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        request_type="export",
        status="ready",
        expires_at=None if expires_in is None else NOW + timedelta(seconds=expires_in),
    )


def _credential(expires_in: float, *, revoked: bool = False, starts_in: float = -60) -> Credential:
    return Credential(
        access_key_id="FRYAAAAAAAAAAAAAAAAA",
        not_before=NOW + timedelta(seconds=starts_in),
        expires_at=NOW + timedelta(seconds=expires_in),
        revoked_at=NOW - timedelta(seconds=1) if revoked else None,
    )


def test_the_export_s_end_bounds_the_link() -> None:
    settings = ExportSettings()
    assert link_seconds(_request(3600), _credential(WEEK), settings, NOW) == 3600


def test_the_credential_s_end_bounds_the_link() -> None:
    settings = ExportSettings()
    assert link_seconds(_request(WEEK), _credential(900), settings, NOW) == 900
    assert link_seconds(_request(None), _credential(900), settings, NOW) == 900


def test_the_configured_life_bounds_the_link() -> None:
    settings = ExportSettings(link_ttl_seconds=600)
    assert link_seconds(_request(WEEK), _credential(WEEK), settings, NOW) == 600


def test_no_link_once_anything_has_ended() -> None:
    settings = ExportSettings()
    assert link_seconds(_request(-1), _credential(WEEK), settings, NOW) == 0
    assert link_seconds(_request(WEEK), _credential(0), settings, NOW) == 0
    assert link_seconds(_request(WEEK), _credential(WEEK, revoked=True), settings, NOW) == 0
    assert link_seconds(_request(WEEK), _credential(WEEK, starts_in=60), settings, NOW) == 0


def test_a_link_lives_at_most_a_week_whatever_its_credential() -> None:
    """SigV4 (and the gateway) refuse an X-Amz-Expires beyond a week: a longer-lived
    credential's link is made for a week, not made unusable."""
    signer = LinkSigner("https://gw.example", "us-east-1", "ferry-export-1", "AKID", "secret")
    for asked, signed in ((30 * 24 * 3600, 604800), (3600, 3600), (0, 1)):
        query = parse_qs(urlsplit(signer.url("r/manifest.json", expires_in=asked)).query)
        assert query["X-Amz-Expires"] == [str(signed)]
