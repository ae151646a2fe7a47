"""AWS Signature Version 4 verification, header and presigned-query forms.

The steps are named as botocore names them when signing (`canonical_request`,
`string_to_sign`, `signature`), so the two can be read side by side. S3 does not normalise
paths: the canonical URI is the path exactly as it arrived. A client whose encoding of the
path differs from AWS's rules is still verified against AWS's encoding of the decoded path;
both name the same key, so accepting either grants nothing more.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from gateway.errors import S3Error
from gateway.httpdate import parse_http_date
from storage import sigv4
from storage.sigv4 import ALGORITHM, signature, signing_key
from storage.validation import parse_decimal

__all__ = ["ALGORITHM", "signature", "signing_key"]  # shared with the signer (storage.sigv4)

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = timedelta(minutes=15)
MAX_EXPIRES = 604_800

Headers = Sequence[tuple[bytes, bytes]]
QueryPairs = list[tuple[str, str]]

_NEEDS_DATE = "AWS authentication requires a valid Date or x-amz-date header"
_AUTH_PART = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


class SigV4Error(S3Error):
    """A request whose signature cannot be accepted; `code` is the S3 error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


@dataclass(frozen=True)
class Signed:
    """The signature claims of a request, parsed but not yet verified."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str = field(repr=False)
    amz_date: str  # as sent: 20261126T225500Z (or an HTTP-date from the Date header)
    timestamp: datetime
    presigned: bool
    expires: int | None
    security_token: str | None = field(repr=False)
    payload_hash: str
    # The request's headers by name, as parse() read them: verify() builds the canonical
    # headers from them rather than decoding every header again.
    header_values: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)


def parse_query(query_string: bytes) -> QueryPairs:
    """Query pairs decoded as S3 does: '+' is a plus, not a space."""
    pairs: QueryPairs = []
    for part in query_string.decode("utf-8", errors="surrogateescape").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append(
            (unquote(name, errors="surrogateescape"), unquote(value, errors="surrogateescape"))
        )
    return pairs


def header_values(headers: Headers) -> dict[str, list[str]]:
    """The request's header values by lower-case name, in the order sent. Values as UTF-8
    (undecodable bytes kept as surrogates), since that is what a client's signature covers."""
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.decode("latin-1").lower(), []).append(
            value.decode("utf-8", errors="surrogateescape")
        )
    return values


# What quote() leaves as it is: most keys and every query value a client sends are made of
# these alone, and a match is a tenth of quote()'s cost.
_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_UNRESERVED_OR_SLASH = re.compile(r"[A-Za-z0-9_.~/-]*")


def _uri_encode(value: str, *, keep_slash: bool) -> str:
    if (_UNRESERVED_OR_SLASH if keep_slash else _UNRESERVED).fullmatch(value):
        return value
    return quote(value, safe="/~" if keep_slash else "~", errors="surrogateescape")


# A client signs request after request with one key for a day: the four HMACs that derive it
# are a tenth of a small GET's verification. Keyed on the secret itself, so a rotated secret
# is a new entry, never a stale hit.
_signing_key = functools.lru_cache(maxsize=1024)(signing_key)


_ISO_BASIC = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z")


def _iso_basic(text: str) -> datetime:
    """`YYYYMMDDTHHMMSSZ` as an aware datetime; strptime, a tenth of a small GET's
    authentication, is not needed for one fixed ASCII form."""
    match = _ISO_BASIC.fullmatch(text)
    if match is None:
        raise ValueError(text)
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _parse_timestamp(amz_date: str, *, header_date: bool) -> datetime:
    try:
        if header_date:
            parsed = parse_http_date(amz_date)
            if parsed is None:
                raise ValueError(amz_date)
            return parsed
        return _iso_basic(amz_date)
    except (ValueError, TypeError):
        raise SigV4Error("AccessDenied", _NEEDS_DATE) from None


def _parse_credential(value: str, error_code: str) -> tuple[str, str, str, str]:
    parts = value.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SigV4Error(
            error_code,
            "the Credential is mal-formed; expecting "
            f'"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request": {value!r}',
        )
    access_key_id, date, region, service, _ = parts
    if not re.fullmatch(r"[0-9]{8}", date):
        raise SigV4Error(error_code, f"invalid date in the credential scope: {date!r}")
    return access_key_id, date, region, service


def parse(method: str, query: QueryPairs, headers: Headers) -> Signed | None:
    """The request's signature claims, or None for an anonymous request."""
    hv = header_values(headers)
    qd = dict(query)
    if "X-Amz-Algorithm" in qd or "X-Amz-Signature" in qd or "X-Amz-Credential" in qd:
        return _parse_presigned(qd, hv)
    auth = hv.get("authorization")
    if auth is None:
        return None
    return _parse_header(auth[0], hv)


def _parse_header(auth: str, hv: dict[str, list[str]]) -> Signed:
    algorithm, _, rest = auth.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4Error("AuthorizationHeaderMalformed", f"unsupported algorithm {algorithm!r}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        match = _AUTH_PART.fullmatch(part)
        if match is None:
            raise SigV4Error(
                "AuthorizationHeaderMalformed", "the authorization header is malformed"
            )
        fields[match.group(1)] = match.group(2)
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise SigV4Error(
            "AuthorizationHeaderMalformed",
            "the authorization header needs Credential, SignedHeaders and Signature",
        )
    access_key_id, date, region, service = _parse_credential(
        fields["Credential"], "AuthorizationHeaderMalformed"
    )
    if "x-amz-date" in hv:
        amz_date, header_date = hv["x-amz-date"][0], False
    elif "date" in hv:
        amz_date, header_date = hv["date"][0], True
    else:
        raise SigV4Error("AccessDenied", _NEEDS_DATE)
    payload = hv.get("x-amz-content-sha256")
    if payload is None:
        raise SigV4Error(
            "InvalidRequest", "missing required header for this request: x-amz-content-sha256"
        )
    token = hv.get("x-amz-security-token")
    return Signed(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(fields["SignedHeaders"].split(";")),
        signature=fields["Signature"],
        amz_date=amz_date,
        timestamp=_parse_timestamp(amz_date, header_date=header_date),
        presigned=False,
        expires=None,
        security_token=token[0] if token else None,
        payload_hash=payload[0],
        header_values=hv,
    )


def _parse_presigned(qd: dict[str, str], hv: dict[str, list[str]]) -> Signed:
    error = "AuthorizationQueryParametersError"
    required = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Signature",
        "X-Amz-Date",
        "X-Amz-SignedHeaders",
    ]
    missing = [name for name in required if name not in qd]
    if missing:
        raise SigV4Error(error, f"query-string authentication requires {', '.join(missing)}")
    if qd["X-Amz-Algorithm"] != ALGORITHM:
        raise SigV4Error(error, 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    access_key_id, date, region, service = _parse_credential(qd["X-Amz-Credential"], error)
    try:
        expires = parse_decimal(qd.get("X-Amz-Expires", ""))
    except ValueError:
        raise SigV4Error(error, "X-Amz-Expires should be a number") from None
    if expires > MAX_EXPIRES:
        raise SigV4Error(
            error,
            "X-Amz-Expires must be less than a week (in seconds); that is, the given "
            "X-Amz-Expires must be less than 604800 seconds",
        )
    if expires <= 0:
        raise SigV4Error(error, "X-Amz-Expires must be non-negative")
    payload = (
        qd.get("X-Amz-Content-Sha256") or (hv.get("x-amz-content-sha256") or [UNSIGNED_PAYLOAD])[0]
    )
    return Signed(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        signed_headers=tuple(qd["X-Amz-SignedHeaders"].split(";")),
        signature=qd["X-Amz-Signature"],
        amz_date=qd["X-Amz-Date"],
        timestamp=_parse_timestamp(qd["X-Amz-Date"], header_date=False),
        presigned=True,
        expires=expires,
        security_token=qd.get("X-Amz-Security-Token"),
        payload_hash=payload,
        header_values=hv,
    )


def canonical_query(query: QueryPairs, *, presigned: bool) -> str:
    pairs = [
        (_uri_encode(k, keep_slash=False), _uri_encode(v, keep_slash=False))
        for k, v in query
        if not (presigned and k == "X-Amz-Signature")
    ]
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(signed: Signed, headers: Headers) -> str:
    hv = signed.header_values or header_values(headers)
    lines = []
    for name in signed.signed_headers:
        values = hv.get(name)
        if values is None:
            raise SigV4Error("SignatureDoesNotMatch", f"signed header {name!r} is missing")
        lines.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    method: str, canonical_uri: str, query: str, headers: str, signed: Signed
) -> str:
    return sigv4.canonical_request(
        method, canonical_uri, query, headers, ";".join(signed.signed_headers), signed.payload_hash
    )


def credential_scope(signed: Signed) -> str:
    return f"{signed.date}/{signed.region}/{signed.service}/aws4_request"


def string_to_sign(signed: Signed, canonical: str) -> str:
    # Always the ISO 8601 basic form, whichever header carried the time: a request dated by
    # `Date` alone (botocore does that when a Date header is set) signs that moment so.
    timestamp = signed.timestamp.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return sigv4.string_to_sign(
        timestamp, f"{signed.date}/{signed.region}/{signed.service}", canonical
    )


def check_time(
    signed: Signed, now: datetime, *, regions: Sequence[str] = (), service: str = "s3"
) -> None:
    """Scope, skew and expiry checks that need no secret."""
    if signed.service != service:
        raise SigV4Error(
            "AuthorizationHeaderMalformed"
            if not signed.presigned
            else "AuthorizationQueryParametersError",
            f"the credential scope names service {signed.service!r}; expecting {service!r}",
        )
    if regions and signed.region not in regions:
        raise SigV4Error(
            "AuthorizationHeaderMalformed",
            f"the region {signed.region!r} is wrong; expecting one of {', '.join(regions)}",
        )
    if signed.timestamp.strftime("%Y%m%d") != signed.date:
        raise SigV4Error(
            "SignatureDoesNotMatch", "the credential scope date does not match the request date"
        )
    if signed.presigned:
        assert signed.expires is not None
        if signed.timestamp - now > MAX_SKEW:
            raise SigV4Error("AccessDenied", "Request is not valid yet")
        if now > signed.timestamp + timedelta(seconds=signed.expires):
            raise SigV4Error("AccessDenied", "Request has expired")
    elif abs(now - signed.timestamp) > MAX_SKEW:
        raise SigV4Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )


def verify(
    signed: Signed,
    secret: str,
    *,
    method: str,
    raw_path: bytes,
    query: QueryPairs,
    headers: Headers,
) -> None:
    """Raise SignatureDoesNotMatch unless the signature is the one `secret` makes."""
    if "host" not in signed.signed_headers:
        raise SigV4Error("AccessDenied", "the host header must be signed")
    cq = canonical_query(query, presigned=signed.presigned)
    ch = canonical_headers(signed, headers)
    key = _signing_key(secret, signed.date, signed.region, signed.service)
    as_sent = raw_path.decode("utf-8", errors="surrogateescape")
    candidates = [as_sent]
    aws_encoded = _uri_encode(unquote(as_sent, errors="surrogateescape"), keep_slash=True)
    if aws_encoded != as_sent:
        candidates.append(aws_encoded)
    matched = False
    for uri in candidates:
        expected = signature(
            key, string_to_sign(signed, canonical_request(method, uri, cq, ch, signed))
        )
        # Both candidates are computed and compared: no early exit to time.
        # As bytes: a signature with non-ASCII characters is simply wrong, not an error.
        matched |= hmac.compare_digest(
            expected.encode(), signed.signature.encode("utf-8", errors="surrogateescape")
        )
    if not matched:
        raise SigV4Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )
