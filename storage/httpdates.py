"""HTTP dates in IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 §5.6.7 has
senders use, written and read without the email package's general parser.

email.utils reads every form a mail header may carry and was a fortieth of a small GET's
CPU (the backend's Last-Modified read, then written again for the client). These are for the
one fixed ASCII form; a text in any other form is left to email.utils by the callers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBERS = {name: number for number, name in enumerate(_MONTHS, 1)}
_IMF_FIXDATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) ([A-Z][a-z]{2}) ([0-9]{4}) "
    r"([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)


def format_http_date(moment: datetime) -> str:
    """`moment` (aware) in IMF-fixdate, whole seconds, as email.utils.format_datetime writes
    it with usegmt=True."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} "
        f"{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT"
    )


def parse_imf_fixdate(text: str) -> datetime | None:
    """An IMF-fixdate as an aware UTC datetime; None for any other text, valid or not."""
    match = _IMF_FIXDATE.fullmatch(text)
    if match is None:
        return None
    day, month_name, year, hour, minute, second = match.groups()
    month = _MONTH_NUMBERS.get(month_name)
    if month is None:
        return None
    try:
        return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:  # 31 Feb, hour 24, ...: the general parser says what it makes of it
        return None
