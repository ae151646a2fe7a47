"""AWS Signature Version 2 verification, header and presigned-query forms.

boto3 presigns with it by default (region us-east-1, no `signature_version`), and older tools
(s3cmd with `signature_v2 = True`) sign every request with it. The steps are named as
botocore's `HmacV1Auth` names them (`canonical_standard_headers`,
`canonical_custom_headers`, `canonical_resource`, `canonical_string`):

    StringToSign = Method \\n Content-MD5 \\n Content-Type \\n Date \\n
                   CanonicalizedAmzHeaders CanonicalizedResource
    Signature    = base64(HMAC-SHA1(secret, StringToSign))

For a presigned URL the Date line is the `Expires` value, and `x-amz-*` query parameters
(the session token, `x-amz-security-token`) count as headers. With an `x-amz-date` header the
Date line is empty, as S3 documents. The resource is the raw path as sent (prefixed by
`/bucket` in virtual-host style) plus the sub-resources S3 signs, sorted, with decoded values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from gateway.httpdate import parse_http_date
from gateway.sigv4 import MAX_SKEW, Headers, SigV4Error, header_values
from storage.validation import parse_decimal

# The query parameters that are part of the signed resource (botocore's QSAOfInterest).
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "cors",
        "defaultObjectAcl",
        "delete",
        "encryption",
        "inventory",
        "lifecycle",
        "location",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "partNumber",
        "policy",
        "replication",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "select",
        "select-type",
        "storageClass",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
    }
)
QUERY_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_NEEDS_DATE = "AWS authentication requires a valid Date or x-amz-date header"


@dataclass(frozen=True)
class SignedV2:
    """The SigV2 claims of a request, parsed but not yet verified."""

    access_key_id: str
    signature: str = field(repr=False)
    presigned: bool
    date_line: str  # the Date line of the string to sign, as sent
    timestamp: datetime  # header auth: when it was signed; presigned: when it expires
    security_token: str | None = field(repr=False)


def is_presigned(query: dict[str, str]) -> bool:
    return "AWSAccessKeyId" in query or "Signature" in query


def parse(query: dict[str, str], headers: Headers) -> SignedV2:
    """The claims of a request already known to be SigV2 (header `AWS …` or query auth)."""
    hv = header_values(headers)
    if is_presigned(query):
        return _parse_presigned(query)
    auth = hv.get("authorization", [""])[0].strip()
    _, _, credential = auth.partition(" ")
    access_key_id, colon, signature = credential.strip().rpartition(":")
    if not colon or not access_key_id or not signature:
        raise SigV4Error(
            "InvalidArgument",
            "AWS authorization header is invalid. Expected AwsAccessKeyId:signature",
        )
    if "x-amz-date" in hv:
        date_line, sent = "", hv["x-amz-date"][0]
    elif "date" in hv:
        date_line = sent = hv["date"][0]
    else:
        raise SigV4Error("AccessDenied", _NEEDS_DATE)
    timestamp = parse_http_date(sent)
    if timestamp is None:
        raise SigV4Error("AccessDenied", _NEEDS_DATE)
    token = hv.get("x-amz-security-token")
    return SignedV2(
        access_key_id=access_key_id,
        signature=signature,
        presigned=False,
        date_line=date_line,
        timestamp=timestamp,
        security_token=token[0] if token else None,
    )


def _parse_presigned(query: dict[str, str]) -> SignedV2:
    missing = [name for name in QUERY_PARAMS if name not in query]
    if missing:
        raise SigV4Error(
            "AccessDenied",
            "Query-string authentication requires the Signature, Expires and "
            "AWSAccessKeyId parameters",
        )
    expires = query["Expires"]
    try:
        # Seconds since the epoch, up to the year 9999: later ones are no moment at all.
        timestamp = datetime.fromtimestamp(parse_decimal(expires, maximum=253_402_300_799), UTC)
    except ValueError:
        raise SigV4Error("AccessDenied", "Invalid date (should be seconds since epoch)") from None
    return SignedV2(
        access_key_id=query["AWSAccessKeyId"],
        signature=query["Signature"],
        presigned=True,
        date_line=expires,
        timestamp=timestamp,
        security_token=query.get("x-amz-security-token"),
    )


def check_time(signed: SignedV2, now: datetime) -> None:
    """Skew (header auth) and expiry (presigned) checks that need no secret."""
    if signed.presigned:
        if now > signed.timestamp:
            raise SigV4Error("AccessDenied", "Request has expired")
    elif abs(now - signed.timestamp) > MAX_SKEW:
        raise SigV4Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
        )


def raw_query_pairs(query_string: bytes) -> list[tuple[str, str | None]]:
    """Query pairs with names and values decoded, a value None where there was no '='."""
    pairs: list[tuple[str, str | None]] = []
    for part in query_string.decode("utf-8", errors="surrogateescape").split("&"):
        if not part:
            continue
        name, eq, value = part.partition("=")
        decoded = unquote(value, errors="surrogateescape") if eq else None
        pairs.append((unquote(name, errors="surrogateescape"), decoded))
    return pairs


def canonical_standard_headers(
    signed: SignedV2, hv: dict[str, list[str]], query: list[tuple[str, str | None]]
) -> str:
    fields = []
    for name in ("content-md5", "content-type"):
        values = hv.get(name)
        if values is None and signed.presigned:
            values = [v or "" for k, v in query if k.lower() == name]
        fields.append(values[0].strip() if values else "")
    return f"{fields[0]}\n{fields[1]}\n{signed.date_line}"


def canonical_custom_headers(
    signed: SignedV2, hv: dict[str, list[str]], query: list[tuple[str, str | None]]
) -> str:
    amz: dict[str, list[str]] = {
        name: list(values) for name, values in hv.items() if name.startswith("x-amz-")
    }
    if signed.presigned:
        for name, value in query:
            if name.lower().startswith("x-amz-"):
                amz.setdefault(name.lower(), []).append(value or "")
    return "".join(f"{name}:{','.join(v.strip() for v in amz[name])}\n" for name in sorted(amz))


def canonical_resource(path: str, query: list[tuple[str, str | None]]) -> str:
    signed = sorted((name, value) for name, value in query if name in SUBRESOURCES)
    if not signed:
        return path
    return path + "?" + "&".join(name if v is None else f"{name}={v}" for name, v in signed)


def canonical_string(
    signed: SignedV2,
    method: str,
    path: str,
    headers: Headers,
    query: list[tuple[str, str | None]],
) -> str:
    hv = header_values(headers)
    return (
        f"{method}\n{canonical_standard_headers(signed, hv, query)}\n"
        f"{canonical_custom_headers(signed, hv, query)}{canonical_resource(path, query)}"
    )


def signature(secret: str, to_sign: str) -> str:
    digest = hmac.new(
        secret.encode(), to_sign.encode("utf-8", errors="surrogateescape"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def verify(
    signed: SignedV2,
    secret: str,
    *,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    bucket_prefix: str = "",
) -> None:
    """Raise SignatureDoesNotMatch unless the signature is the one `secret` makes.

    `bucket_prefix` is `/bucket` for a virtual-host style request, whose path lacks it.
    """
    query = raw_query_pairs(query_string)
    as_sent = raw_path.decode("utf-8", errors="surrogateescape")
    candidates = [as_sent]
    # As for SigV4: a client whose path encoding differs from AWS's rules is verified
    # against AWS's encoding too; both name the same key.
    aws_encoded = quote(
        unquote(as_sent, errors="surrogateescape"), safe="/~", errors="surrogateescape"
    )
    if aws_encoded != as_sent:
        candidates.append(aws_encoded)
    given = signed.signature.encode("utf-8", errors="surrogateescape")
    matched = False
    for path in candidates:
        expected = signature(
            secret, canonical_string(signed, method, bucket_prefix + path, headers, query)
        )
        # Every candidate is computed and compared: no early exit to time.
        matched |= hmac.compare_digest(expected.encode(), given)
    if not matched:
        raise SigV4Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )


def expires_within(signed: SignedV2, limit: datetime) -> None:
    """A presigned URL may not outlive the credential that signed it."""
    if signed.presigned and signed.timestamp > limit:
        raise SigV4Error(
            "AccessDenied",
            "Expires lies beyond the expiry of the credential that signed the request.",
        )
