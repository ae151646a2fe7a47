"""The IMF-fixdate fast paths agree with email.utils, the general parser they stand in for."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from storage.httpdates import format_http_date, parse_imf_fixdate


def _moments() -> list[datetime]:
    rng = random.Random(7)
    start = datetime(1970, 1, 1, tzinfo=UTC)
    return [start + timedelta(seconds=rng.randrange(0, 200 * 365 * 86400)) for _ in range(2000)]


def test_format_and_parse_agree_with_email_utils() -> None:
    for moment in _moments():
        text = format_http_date(moment)
        assert text == format_datetime(moment, usegmt=True)
        assert parse_imf_fixdate(text) == parsedate_to_datetime(text) == moment


def test_an_aware_time_in_another_zone_is_written_in_gmt() -> None:
    tokyo = datetime(2026, 1, 1, 9, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=9)))
    assert format_http_date(tokyo) == "Thu, 01 Jan 2026 00:00:00 GMT"


@pytest.mark.parametrize(
    "text",
    [
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
        "Sun, 06 Nov 1994 08:49:37 -0000",  # a numeric zone, as botocore writes
        "Sun, 06 Nov 1994 08:49:37 +0100",
        "Sun, 31 Feb 1994 08:49:37 GMT",  # no such day
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "",
    ],
)
def test_any_other_form_is_left_to_the_general_parser(text: str) -> None:
    assert parse_imf_fixdate(text) is None
