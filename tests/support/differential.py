"""What the differential suite sends and how it compares two answers.

A `Case` is one read request, described once and signed twice: with the reference server's
own key straight to it, and with a Ferry credential to Ferry in front of that server. An
`Answer` keeps what a client would notice: the status, the S3 error code, the body (as a
digest) or the listing it holds, and the headers that matter. Where a reference server is
known to depart from AWS's documented behaviour, a `Departure` names AWS's answer, with a
link to the documentation, and Ferry must give that answer instead of the reference's.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import quote

MIB = 1024 * 1024
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

DOC = "doc.txt"
DOC_BYTES = b"".join(f"line {i:04d} of the differential document\n".encode() for i in range(25))
DOC_TYPE = "text/plain; charset=utf-8"
DOC_DISPOSITION = 'attachment; filename="doc.txt"'
EMPTY = "empty"
MP = "mp.bin"
MP_PARTS = [b"1" * (5 * MIB), b"2" * (5 * MIB), b"3" * 1000]
LISTED = ["list/a", "list/b/1", "list/b/2", "list/c d", "list/x+y", "list/é", "list/z/deep/k"]


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


DOC_ETAG = f'"{_md5(DOC_BYTES)}"'
MP_ETAG = '"{}-3"'.format(_md5(b"".join(bytes.fromhex(_md5(p)) for p in MP_PARTS)))
PAST = "Sat, 01 Jan 2000 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"
# Headers compared on a 2xx or 304 answer; error answers compare status and code.
COMPARED = (
    "content-length",
    "content-range",
    "etag",
    "content-type",
    "content-disposition",
    "accept-ranges",
    "x-amz-mp-parts-count",
)

Query = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class Case:
    name: str
    method: str = "GET"
    key: str | None = None  # None: a bucket-level request
    query: Query = ()
    headers: tuple[tuple[str, str], ...] = ()
    signing: str = "v4"  # "v4", "v4-date" (Date, no X-Amz-Date), "v2", "v2-url"

    def path(self, bucket: str) -> str:
        return f"/{bucket}" + ("" if self.key is None else "/" + quote(self.key, safe="/~"))

    def query_string(self) -> str:
        return "&".join(
            quote(n, safe="-_.~")
            if v is None
            else f"{quote(n, safe='-_.~')}={quote(v, safe='-_.~')}"
            for n, v in self.query
        )

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None

    def param(self, name: str) -> str | None:
        for n, v in self.query:
            if n == name:
                return "" if v is None else v
        return None

    def signed_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.signing == "v4-date":
            headers["Date"] = formatdate(usegmt=True)
        return headers


@dataclass(frozen=True)
class Answer:
    status: int
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None  # sha256 of an object body
    listing: tuple[tuple[str, object], ...] | None = None

    def describe(self) -> str:
        parts = [str(self.status)]
        if self.code:
            parts.append(self.code)
        parts += [f"{k}={v}" for k, v in sorted(self.headers.items())]
        if self.listing is not None:
            parts.append(repr(dict(self.listing)))
        return " ".join(parts)


def _listing(root: ET.Element) -> tuple[tuple[str, object], ...]:
    def text(name: str) -> str | None:
        found = root.find(NS + name)
        return None if found is None else (found.text or "")

    keys = [e.findtext(NS + "Key", "") for e in root.iter(NS + "Contents")]
    prefixes = [e.findtext(NS + "Prefix", "") for e in root.iter(NS + "CommonPrefixes")]
    summary: dict[str, object] = {
        "keys": keys,
        "prefixes": prefixes,
        "truncated": text("IsTruncated"),
        "prefix": text("Prefix") or "",
        "max_keys": text("MaxKeys"),
    }
    if root.find(NS + "KeyCount") is not None:
        summary["key_count"] = text("KeyCount")
    return tuple(summary.items())


def answer(case: Case, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    lower = {k.lower(): v for k, v in headers.items()}
    code = None
    listing = None
    digest = None
    if body.lstrip().startswith(b"<"):
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            root = None
        if root is not None and root.tag.endswith("Error"):
            code = root.findtext("Code")
        elif root is not None and root.tag.endswith("ListBucketResult"):
            listing = _listing(root)
        elif root is not None and root.tag.endswith("LocationConstraint"):
            listing = (("location", root.text or ""),)
        elif root is not None and root.tag.endswith("CreateBucketConfiguration"):
            # SeaweedFS wraps its answer in the CreateBucket document; the value compares.
            listing = (("location", root.findtext("LocationConstraint") or ""),)
    if code is None and listing is None and case.key is not None and status < 300:
        digest = hashlib.sha256(body).hexdigest()
    kept: dict[str, str] = {}
    if status == 304:
        # What else a 304 repeats of the 200 differs between servers; RFC 9110 §15.4.5
        # asks for the ETag.
        kept = {"etag": lower["etag"]} if "etag" in lower else {}
    elif status < 300:
        for name in COMPARED:
            if name in lower and not (listing is not None and name == "content-length"):
                kept[name] = lower[name]
        if listing is not None or case.key is None:
            kept.pop("content-type", None)  # XML answers differ only in charset spelling
            kept.pop("accept-ranges", None)
    return Answer(status, code, kept, digest, listing)


def differences(direct: Answer, ferry: Answer) -> list[str]:
    found = []
    if direct.status != ferry.status:
        found.append(f"status {direct.status} != {ferry.status}")
    if direct.code and ferry.code and direct.code != ferry.code:
        found.append(f"code {direct.code} != {ferry.code}")
    if direct.body != ferry.body:
        found.append("body differs")
    if direct.listing != ferry.listing:
        found.append(f"listing {direct.listing} != {ferry.listing}")
    for name in COMPARED:
        a, b = direct.headers.get(name), ferry.headers.get(name)
        if a is not None and b is not None and a != b:
            found.append(f"{name} {a!r} != {b!r}")
        elif (a is None) != (b is None) and name != "accept-ranges":
            found.append(f"{name} only on {'the reference' if a is not None else 'Ferry'}")
    return found


@dataclass(frozen=True)
class Departure:
    """A reference server's known departure from AWS, and AWS's documented answer."""

    why: str
    servers: frozenset[str]
    applies: Callable[[Case, Answer], bool]
    aws: Callable[[Case], tuple[int, ...]]  # the statuses AWS answers with
    link: str


GET_OBJECT = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html"
HEAD_OBJECT = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html"
CONDITIONAL = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html"
LIST_V2 = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html"


def _part(case: Case) -> str | None:
    return case.param("partNumber")


def _valid_part(case: Case) -> bool:
    part = _part(case)
    return part is not None and part.isascii() and part.isdigit() and 1 <= int(part) <= 10_000


def _imf(value: str) -> bool:
    return value.endswith(" GMT") and value[3:5] == ", "


def _dates(case: Case) -> list[str]:
    return [v for n, v in case.headers if n.lower() in ("if-modified-since", "if-unmodified-since")]


def _part_status(case: Case) -> tuple[int, ...]:
    if not _valid_part(case):
        return (400,)
    if case.header("range") is not None:
        return (400,)
    count = 3 if case.key == MP else 1
    if int(_part(case) or 0) > count or case.key == EMPTY:
        return (416,)
    return (206, 304, 412)


def _conditions(case: Case) -> set[str]:
    names = {"if-match", "if-none-match", "if-modified-since", "if-unmodified-since"}
    return {n.lower() for n, _ in case.headers if n.lower() in names}


PRECEDENCE = "https://www.rfc-editor.org/rfc/rfc9110#section-13.2.2"


def _precedence_or_star(case: Case) -> bool:
    given = _conditions(case)
    star = "*" in (
        (case.header("if-match") or "").strip(),
        (case.header("if-none-match") or "").strip(),
    )
    return (
        star
        or {"if-match", "if-unmodified-since"} <= given
        or {"if-none-match", "if-modified-since"} <= given
    )


DEPARTURES = [
    Departure(
        "moto reads a Range of another unit (items=0-1) as bytes; a recipient ignores a"
        " range unit it does not know and S3 answers 200 with the whole object",
        frozenset({"moto"}),
        lambda c, d: (c.header("range") or "bytes=").split("=")[0].strip() != "bytes",
        lambda c: (200, 304, 412),
        "https://www.rfc-editor.org/rfc/rfc9110#section-14.2",
    ),
    Departure(
        "moto evaluates every conditional it is sent; AWS and RFC 9110 skip"
        " If-Unmodified-Since when If-Match is present and If-Modified-Since when"
        " If-None-Match is, and If-Match: * holds for any object",
        frozenset({"moto"}),
        lambda c, d: _precedence_or_star(c),
        lambda c: (200, 206, 304, 412, 416),
        CONDITIONAL + " and " + PRECEDENCE,
    ),
    Departure(
        "moto answers 200 to If-None-Match: * (a condition every object meets: 304)",
        frozenset({"moto"}),
        lambda c, d: (c.header("if-none-match") or "").strip() == "*",
        lambda c: (304, 412, 416, 400),
        CONDITIONAL,
    ),
    Departure(
        "moto answers 500 to a conditional date that is not IMF-fixdate (RFC 850, asctime,"
        " '-0000', invalid); AWS evaluates the valid forms and ignores an invalid date",
        frozenset({"moto"}),
        lambda c, d: d.status == 500 and any(not _imf(v) for v in _dates(c)),
        lambda c: (200, 206, 304, 412, 416),
        GET_OBJECT,
    ),
    Departure(
        "SeaweedFS answers 400 InvalidRequest to an invalid conditional date; AWS ignores it",
        frozenset({"seaweedfs"}),
        lambda c, d: d.status == 400 and d.code in (None, "InvalidRequest") and bool(_dates(c)),
        lambda c: (200, 206, 304, 412, 416, 400),
        GET_OBJECT,
    ),
    Departure(
        "partNumber: AWS answers 206 with the part, 416 InvalidPartNumber beyond the last"
        " part (and for an empty object, which has no byte: moto answers 206 with"
        " 'bytes 0--1/0'), 400 InvalidArgument outside 1-10000 and 400 InvalidRequest beside"
        " a Range; moto serves a multipart object whole and lets the others pass",
        frozenset({"moto"}),
        lambda c, d: (
            _part(c) is not None
            and (c.key in (MP, EMPTY) or not _valid_part(c) or c.header("range") is not None)
        ),
        _part_status,
        GET_OBJECT + "#API_GetObject_RequestSyntax",
    ),
    Departure(
        "SeaweedFS ignores a partNumber outside 1-10000 (or answers 416 above it) and serves"
        " a Range beside one; AWS answers 400 InvalidArgument and 400 InvalidRequest",
        frozenset({"seaweedfs"}),
        lambda c, d: _part(c) is not None and (not _valid_part(c) or c.header("range") is not None),
        _part_status,
        GET_OBJECT + "#API_GetObject_RequestSyntax",
    ),
    Departure(
        "moto answers 200 to a multi-range or suffix-of-nothing Range it cannot satisfy",
        frozenset({"moto"}),
        lambda c, d: (c.header("range") or "").replace(" ", "") in ("bytes=-0",),
        lambda c: (200, 416),
        "https://www.rfc-editor.org/rfc/rfc9110#section-14.1.1",
    ),
]


LIST_V1 = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjects.html"
HEAD_RANGE = HEAD_OBJECT + "#API_HeadObject_RequestSyntax"
DATE_SIGNED = (
    "https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-auth-using-authorization-header.html"
)


def _listing_param(case: Case, name: str) -> str | None:
    return case.param(name) if case.key is None else None


def _bad_max_keys(case: Case) -> bool:
    value = _listing_param(case, "max-keys")
    return value is not None and not (value.isascii() and value.isdigit())


DEPARTURES += [
    Departure(
        "an encoding-type other than url is 400 InvalidArgument on AWS; both references list",
        frozenset({"moto", "seaweedfs"}),
        lambda c, d: _listing_param(c, "encoding-type") not in (None, "url"),
        lambda c: (400,),
        LIST_V2 + "#API_ListObjectsV2_RequestSyntax",
    ),
    Departure(
        "a max-keys that is no whole number is 400 InvalidArgument on AWS; moto lists (-1)"
        " or answers 500 (abc)",
        frozenset({"moto"}),
        lambda c, d: _bad_max_keys(c),
        lambda c: (400,),
        LIST_V2 + "#API_ListObjectsV2_RequestSyntax",
    ),
    Departure(
        "common prefixes count toward max-keys on AWS ('will never contain more');"
        " moto returns max-keys keys and every common prefix besides",
        frozenset({"moto"}),
        lambda c, d: (
            _listing_param(c, "delimiter") is not None and _listing_param(c, "max-keys") is not None
        ),
        lambda c: (200,),
        LIST_V1,
    ),
    Departure(
        "AWS answers a max-keys above 1000 with at most 1000 keys; SeaweedFS refuses it (400)",
        frozenset({"seaweedfs"}),
        lambda c, d: (
            (_listing_param(c, "max-keys") or "0").isdigit()
            and int(_listing_param(c, "max-keys") or "0") > 1000
        ),
        lambda c: (200,),
        LIST_V2 + "#API_ListObjectsV2_RequestSyntax",
    ),
    Departure(
        "SeaweedFS refuses SigV4 dated by the Date header alone (MalformedDate); AWS"
        " accepts Date when there is no x-amz-date",
        frozenset({"seaweedfs"}),
        lambda c, d: c.signing == "v4-date",
        lambda c: (200, 206, 304, 412, 416),
        DATE_SIGNED,
    ),
    Departure(
        "SeaweedFS ignores Range on HEAD; AWS answers it as GET would (206 with the range's"
        " Content-Length and Content-Range, or 416)",
        frozenset({"seaweedfs"}),
        lambda c, d: c.method == "HEAD" and c.header("range") is not None,
        lambda c: (200, 206, 416),
        HEAD_RANGE,
    ),
    Departure(
        "SeaweedFS (and moto, on an empty object) answer 416 to a Range whose last byte is"
        " before its first; RFC 9110 makes that Range invalid, to be ignored, and AWS serves"
        " the object (200)",
        frozenset({"moto", "seaweedfs"}),
        lambda c, d: d.status == 416 and _reversed_range(c.header("range")),
        lambda c: (200, 304, 412),
        "https://www.rfc-editor.org/rfc/rfc9110#section-14.1.1",
    ),
]


DEPARTURES.append(
    Departure(
        "moto answers 200 to a suffix Range on an empty object; a suffix range is"
        " satisfiable only by a representation with at least one byte (416)",
        frozenset({"moto"}),
        lambda c, d: c.key == EMPTY and (c.header("range") or "").startswith("bytes=-"),
        lambda c: (304, 412, 416),
        "https://www.rfc-editor.org/rfc/rfc9110#section-14.1.1",
    )
)
DEPARTURES.append(
    Departure(
        "moto ignores response-* overrides on HEAD; AWS applies them to HeadObject too",
        frozenset({"moto"}),
        lambda c, d: c.method == "HEAD" and any(n.startswith("response-") for n, _ in c.query),
        lambda c: (200, 206, 304, 400, 412, 416),
        HEAD_OBJECT + "#API_HeadObject_RequestSyntax",
    )
)
DEPARTURES.append(
    Departure(
        "SeaweedFS leaves response-* overrides out of the SigV2 resource it verifies and"
        " refuses such a request (SignatureDoesNotMatch); S3 signs them as sub-resources",
        frozenset({"seaweedfs"}),
        lambda c, d: (
            c.signing.startswith("v2")
            and d.status == 403
            and d.code in (None, "SignatureDoesNotMatch")
            and any(n.startswith("response-") for n, _ in c.query)
        ),
        lambda c: (200, 206, 304, 400, 412, 416),
        "https://docs.aws.amazon.com/AmazonS3/latest/userguide/RESTAuthentication.html"
        "#ConstructingTheCanonicalizedResourceElement",
    )
)
DEPARTURES.append(
    Departure(
        "SeaweedFS sends x-amz-mp-parts-count: 1 for an object put whole; AWS sends the"
        " count only for an object uploaded in parts",
        frozenset({"seaweedfs"}),
        lambda c, d: _part(c) is not None and c.key != MP and "x-amz-mp-parts-count" in d.headers,
        lambda c: (206,),
        GET_OBJECT + "#API_GetObject_ResponseSyntax",
    )
)
DEPARTURES.append(
    Departure(
        "moto encodes a space as %20 under encoding-type=url; AWS uses form encoding, a"
        " space as '+' and '+' as %2B (as SeaweedFS does; botocore decodes with unquote_plus)",
        frozenset({"moto"}),
        lambda c, d: _listing_param(c, "encoding-type") == "url",
        lambda c: (200,),
        LIST_V2 + "#AmazonS3-ListObjectsV2-response-EncodingType",
    )
)


def _reversed_range(value: str | None) -> bool:
    if value is None or not value.startswith("bytes="):
        return False
    first, _, last = value[6:].partition("-")
    return first.isdigit() and last.isdigit() and int(last) < int(first)


def explain(server: str, case: Case, direct: Answer, ferry: Answer) -> str | None:
    """The departure that explains why Ferry answered otherwise, if Ferry gave AWS's answer."""
    for departure in DEPARTURES:
        if server in departure.servers and departure.applies(case, direct):
            if ferry.status in departure.aws(case):
                return f"{departure.why} ({departure.link})"
    return None
