"""HTTP dates as RFC 9110 §5.6.7 has recipients read them, for conditionals and Date.

All three forms are accepted (IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT`, RFC 850
`Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`), and a numeric zone
(`-0000`, which botocore's `formatdate` writes). A date without a zone is UTC, as the RFC
says HTTP dates are; one that cannot be read is None, and its header is then ignored, as
RFC 9110 and S3 ignore an invalid conditional date.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from storage.httpdates import parse_imf_fixdate


def parse_http_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    fixdate = parse_imf_fixdate(value)
    if fixdate is not None:
        return fixdate
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
