"""The same signed read requests straight to a reference S3 server and through Ferry in front
of it, side by side: status, error code, body, listing and the headers that matter agree.

References: moto in server mode and SeaweedFS (tests/fixtures/servers.py). Ferry runs
in-process (GatewayApp over the s3 backend pointed at the same server, the same bucket
name), so both sides serve the same bytes. Where a reference departs from AWS's documented
behaviour, tests/support/differential.py states AWS's answer with a link, and Ferry must give
that one. Then hypothesis combines the same pieces at random against both.

Every comparison is tallied; the last test writes the tally to
`.pytest_cache/ferry-differential.json` and prints "N cases, N agree, N explained".
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from gateway.app import GatewayApp, GatewaySettings
from gateway.audit import AuditWriter
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.s3 import S3Storage
from sts.issue import IssueRequest, issue
from sts.store import CredentialStore
from tests.fixtures.servers import S3Server
from tests.support.differential import (
    DOC,
    DOC_BYTES,
    DOC_DISPOSITION,
    DOC_ETAG,
    DOC_TYPE,
    EMPTY,
    FUTURE,
    LISTED,
    MP,
    MP_ETAG,
    MP_PARTS,
    PAST,
    Answer,
    Case,
    answer,
    differences,
    explain,
)
from tests.support.signing import sign, sign_v2

FERRY = "http://testserver"
SUMMARY = Path(__file__).parents[2] / ".pytest_cache" / "ferry-differential.json"


@dataclass
class Tally:
    cases: int = 0
    agree: int = 0
    explained: dict[str, int] = field(default_factory=dict)
    by_group: dict[str, list[int]] = field(default_factory=dict)
    table: dict[str, str] = field(default_factory=dict)  # issue 17's rows: how each went

    def add(self, group: str, explanation: str | None, case: Case) -> None:
        if case.name in TABLE_ROWS:
            server = group.split(",")[0]
            self.table[f"{server}: {case.name}"] = "agree" if explanation is None else "explained"
        self.cases += 1
        counts = self.by_group.setdefault(group, [0, 0, 0])
        counts[0] += 1
        if explanation is None:
            self.agree += 1
            counts[1] += 1
        else:
            counts[2] += 1
            self.explained[explanation] = self.explained.get(explanation, 0) + 1


# The requests of issue 17's table that a reference server can be asked (HeadBucket of a
# bucket whose backend bucket is gone is in tests/functional/test_gateway_conformance.py).
TABLE_ROWS = {
    "get part 2",
    "part 1",
    "get part 4",
    "single part 2",
    "If-Modified-Since Fri Jan  1 00:00:00 2100",
    "If-Modified-Since Fri, 01 Jan 2100 00:00:00 -0000",
    "date-signed v4",
    "sigv2 url",
    "propfind",
    "trace",
    "list v1 newline prefix",
}
TALLY = Tally()


@dataclass
class Pair:
    kind: str
    server: S3Server
    bucket: str
    client: TestClient
    access_key_id: str
    secret: str
    http: requests.Session

    def direct(self, case: Case) -> Answer:
        url = self.server.endpoint_url + case.path(self.bucket)
        signed = self._sign(case, url, self.server.access_key_id, self.server.secret_access_key)
        headers = _sent_headers(case, signed)
        response = self.http.request(
            case.method, signed.url, headers=headers, allow_redirects=False, timeout=60
        )
        return answer(case, response.status_code, response.headers, response.content)

    def ferry(self, case: Case) -> Answer:
        url = FERRY + case.path(self.bucket)
        signed = self._sign(case, url, self.access_key_id, self.secret)
        headers = _sent_headers(case, signed)
        response = self.client.request(case.method, signed.url, headers=headers)
        return answer(case, response.status_code, response.headers, response.content)

    @staticmethod
    def _sign(case: Case, url: str, key_id: str, secret: str) -> Any:
        query = case.query_string()
        if query:
            url += "?" + query
        headers = case.signed_headers()
        if case.signing.startswith("v2"):
            presign = 600 if case.signing == "v2-url" else None
            return sign_v2(
                url,
                access_key_id=key_id,
                secret=secret,
                method=case.method,
                headers=headers,
                presign=presign,
            )
        return sign(url, access_key_id=key_id, secret=secret, method=case.method, headers=headers)

    def compare(self, case: Case, suite: str) -> None:
        direct, ferry = self.direct(case), self.ferry(case)
        assert ferry.status < 500, f"{case}: Ferry answered {ferry.describe()}"
        found = differences(direct, ferry)
        explanation = None
        if found:
            explanation = explain(self.kind, case, direct, ferry)
            assert explanation is not None, (
                f"{self.kind} {case}:\n  {'; '.join(found)}\n"
                f"  direct: {direct.describe()}\n  ferry:  {ferry.describe()}"
            )
        TALLY.add(f"{self.kind}, {suite}", explanation, case)


def _sent_headers(case: Case, signed: Any) -> dict[str, str]:
    # A presigned URL travels with the client's own headers (Range, conditionals), not
    # with what botocore added while signing it.
    if case.signing == "v2-url":
        return dict(case.headers)
    return dict(signed.headers.items())


def _seed(server: S3Server) -> str:
    bucket = server.new_bucket("diff")
    s3 = server.client()
    s3.put_object(
        Bucket=bucket,
        Key=DOC,
        Body=DOC_BYTES,
        ContentType=DOC_TYPE,
        ContentDisposition=DOC_DISPOSITION,
    )
    s3.put_object(Bucket=bucket, Key=EMPTY, Body=b"")
    upload = s3.create_multipart_upload(Bucket=bucket, Key=MP)["UploadId"]
    parts = [
        {
            "PartNumber": n,
            "ETag": s3.upload_part(Bucket=bucket, Key=MP, UploadId=upload, PartNumber=n, Body=data)[
                "ETag"
            ],
        }
        for n, data in enumerate(MP_PARTS, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=MP, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    for key in LISTED:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


@pytest.fixture(scope="module", params=["moto", "seaweedfs"])
def pair(request: pytest.FixtureRequest, database_url: str) -> Iterator[Pair]:
    kind: str = request.param
    server: S3Server = request.getfixturevalue("moto_server" if kind == "moto" else kind)
    bucket = _seed(server)
    storage = S3Storage(
        server.endpoint_url, server.region, server.access_key_id, server.secret_access_key
    )
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    master_key = secrets.token_bytes(32)
    app = GatewayApp(
        storage=storage,
        credentials=CredentialStore(sessions, master_key, max_age=0.0),
        audit=AuditWriter(sessions, interval=0.05),
        settings=GatewaySettings(),
    )
    issued: list[tuple[str, str]] = []

    async def setup() -> None:
        async with sessions.begin() as session:
            user, _ = await create_user(session, f"diff-{secrets.token_hex(4)}@example.com")
            record = await create_bucket(
                session, storage, bucket, owner_email=user.email, backend_bucket=bucket
            )
            grant = IssueRequest(session_token=False)
            made = await issue(session, master_key, user, record, grant, now=datetime.now(UTC))
            issued.append((made.credential.access_key_id, made.secret))

    with TestClient(app) as client, requests.Session() as http:
        client.portal.call(setup)  # type: ignore[union-attr]
        yield Pair(kind, server, bucket, client, issued[0][0], issued[0][1], http)
        client.portal.call(app.audit.close)  # type: ignore[union-attr]
        client.portal.call(engine.dispose)  # type: ignore[union-attr]
        client.portal.call(storage.close)  # type: ignore[union-attr]


# The cases: one list, sent to both references.


def _get(name: str, key: str = DOC, *, method: str = "GET", signing: str = "v4", **kw: Any) -> Case:
    headers = tuple((k.replace("_", "-").title(), v) for k, v in kw.pop("headers", {}).items())
    query = tuple(kw.pop("query", ()))
    assert not kw
    return Case(name, method, key, query, headers, signing)


RANGES = [
    "bytes=0-0",
    "bytes=0-9",
    "bytes=10-19",
    "bytes=-5",
    "bytes=-2000",
    "bytes=990-",
    "bytes=999-",
    "bytes=1000-",
    "bytes=5000-",
    "bytes=9-0",
    "bytes=abc",
    "items=0-1",
    "bytes=0-1,4-5",
    "bytes=0-99999999",
]
CONDITIONS = {
    "If-Match": [DOC_ETAG, '"0000"', "*"],
    "If-None-Match": [DOC_ETAG, '"0000"', "*"],
    "If-Modified-Since": [
        PAST,
        FUTURE,
        "Fri Jan  1 00:00:00 2100",
        "Friday, 01-Jan-99 00:00:00 GMT",
        "Fri, 01 Jan 2100 00:00:00 -0000",
        "garbage",
    ],
    "If-Unmodified-Since": [PAST, FUTURE, "Sat Jan  1 00:00:00 2000", "garbage"],
}
PAIR_VALUES = {
    "If-Match": [DOC_ETAG, '"0000"'],
    "If-None-Match": [DOC_ETAG, '"0000"'],
    "If-Modified-Since": [PAST, FUTURE],
    "If-Unmodified-Since": [PAST, FUTURE],
}
OVERRIDES = [
    ("response-content-type", "application/x-test"),
    ("response-content-disposition", 'inline; filename="x y.txt"'),
    ("response-cache-control", "no-cache"),
    ("response-content-language", "fr"),
    ("response-expires", "Thu, 01 Dec 1994 16:00:00 GMT"),
    ("response-content-encoding", "identity"),
]


def build_cases() -> list[Case]:
    cases = [
        _get("whole"),
        _get("head", method="HEAD"),
        _get("empty", EMPTY),
        _get("empty head", EMPTY, method="HEAD"),
        _get("empty range", EMPTY, headers={"range": "bytes=0-0"}),
        _get("empty suffix range", EMPTY, headers={"range": "bytes=-5"}),
        _get("missing key", "no/such/key"),
        _get("missing head", "no/such/key", method="HEAD"),
        _get("multipart head", MP, method="HEAD"),
        _get(
            "multipart range across parts",
            MP,
            headers={"range": f"bytes={5 * 1024 * 1024 - 5}-{5 * 1024 * 1024 + 4}"},
        ),
        _get("date-signed v4", signing="v4-date"),
        _get("sigv2 header", signing="v2"),
        _get("sigv2 url", signing="v2-url"),
        _get("sigv2 head", method="HEAD", signing="v2"),
        _get("sigv2 listing", None, signing="v2", query=[("prefix", "list/"), ("delimiter", "/")]),
        _get("sigv2 part", MP, signing="v2-url", query=[("partNumber", "3")]),
        _get("propfind", method="PROPFIND"),
        _get("trace", method="TRACE"),
        _get("location", None, query=[("location", None)]),
        _get("head bucket", None, method="HEAD"),
    ]
    for value in RANGES:
        cases.append(_get(f"range {value}", headers={"range": value}))
        cases.append(_get(f"head range {value}", method="HEAD", headers={"range": value}))
    for name, values in CONDITIONS.items():
        for value in values:
            cases.append(_get(f"{name} {value}", headers={name: value}))
    for a, b in itertools.combinations(PAIR_VALUES, 2):
        for va, vb in itertools.product(PAIR_VALUES[a], PAIR_VALUES[b]):
            cases.append(_get(f"{a} {va} + {b} {vb}", headers={a: va, b: vb}))
    cases.append(_get("If-None-Match head", method="HEAD", headers={"If-None-Match": DOC_ETAG}))
    cases.append(_get("If-Match range", headers={"If-Match": DOC_ETAG, "Range": "bytes=0-9"}))
    for number in ["1", "2", "3", "4", "0", "abc", "10001"]:
        cases.append(_get(f"part {number}", MP, method="HEAD", query=[("partNumber", number)]))
    for number in ["2", "3", "4"]:
        cases.append(_get(f"get part {number}", MP, query=[("partNumber", number)]))
    cases.append(_get("get part 1", MP, query=[("partNumber", "1")]))
    for number in ["1", "2"]:
        cases.append(_get(f"single part {number}", query=[("partNumber", number)]))
    cases.append(
        _get("part with range", MP, query=[("partNumber", "3")], headers={"range": "bytes=0-1"})
    )
    cases.append(
        _get("part with If-Match", MP, query=[("partNumber", "3")], headers={"If-Match": MP_ETAG})
    )
    for name, value in OVERRIDES:
        cases.append(_get(f"override {name}", query=[(name, value)]))
    cases.append(_get("all overrides", query=OVERRIDES))
    listings: list[tuple[str, list[tuple[str, str | None]]]] = [
        ("v1", []),
        ("v1 prefix", [("prefix", "list/")]),
        ("v1 delimiter", [("prefix", "list/"), ("delimiter", "/")]),
        ("v1 newline prefix", [("prefix", "\n")]),
        ("v1 encoded", [("prefix", "list/"), ("encoding-type", "url")]),
        ("v1 bad encoding", [("encoding-type", "xml")]),
        ("v1 marker", [("prefix", "list/"), ("marker", "list/b/1")]),
        ("v2", [("list-type", "2")]),
        ("v2 prefix delimiter", [("list-type", "2"), ("prefix", "list/"), ("delimiter", "/")]),
        ("v2 start-after", [("list-type", "2"), ("prefix", "list/"), ("start-after", "list/b/1")]),
        ("v2 encoded", [("list-type", "2"), ("prefix", "list/"), ("encoding-type", "url")]),
        ("v2 fetch-owner", [("list-type", "2"), ("prefix", "list/"), ("fetch-owner", "true")]),
        ("v2 missing prefix", [("list-type", "2"), ("prefix", "nothing/")]),
    ]
    for max_keys in ["0", "1", "2", "-1", "abc", "1000", "99999"]:
        listings.append((f"v1 max-keys {max_keys}", [("prefix", "list/"), ("max-keys", max_keys)]))
        listings.append(
            (
                f"v2 max-keys {max_keys}",
                [("list-type", "2"), ("prefix", "list/"), ("max-keys", max_keys)],
            )
        )
    listings.append(
        ("v1 max-keys 1 delimiter", [("prefix", "list/"), ("delimiter", "/"), ("max-keys", "1")])
    )
    for name, query in listings:
        cases.append(_get(f"list {name}", None, query=query))
    return cases


CASES = build_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(pair: Pair, case: Case) -> None:
    pair.compare(case, "listed cases")


# hypothesis: the same pieces, combined at random

_objects = st.sampled_from([DOC, EMPTY, MP])
_ranges = st.one_of(st.none(), st.sampled_from(RANGES))
_conditions = st.dictionaries(
    st.sampled_from(sorted(CONDITIONS)),
    st.sampled_from(sorted({v for vs in CONDITIONS.values() for v in vs} | {MP_ETAG})),
    max_size=3,
)
_parts = st.one_of(st.none(), st.sampled_from(["1", "2", "3", "4", "0", "x"]))
_overrides = st.lists(st.sampled_from(OVERRIDES), max_size=2, unique=True)


@st.composite
def object_requests(draw: st.DrawFn) -> Case:
    key = draw(_objects)
    method = draw(st.sampled_from(["GET", "HEAD"]))
    headers = dict(draw(_conditions))
    span = draw(_ranges)
    part = draw(_parts)
    if key == MP and method == "GET" and span is None and part in (None, "1", "2"):
        span = "bytes=0-99"  # the whole 10 MiB object, twice per example, is too slow
    if span is not None:
        headers["Range"] = span
    query: list[tuple[str, str | None]] = []
    if part is not None:
        query.append(("partNumber", part))
    query += draw(_overrides)
    signing = draw(st.sampled_from(["v4", "v4", "v4", "v2", "v2-url", "v4-date"]))
    return Case("hypothesis", method, key, tuple(query), tuple(headers.items()), signing)


# Derandomized: the references' quirks are not Ferry's bugs, and a new one found at random
# would fail an unrelated change's run; the same 150 examples each time also make the tally
# comparable between runs. tests/functional/test_gateway_fuzz.py stays random.
@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(case=object_requests())
def test_generated_requests(pair: Pair, case: Case) -> None:
    pair.compare(case, "hypothesis")


def test_zz_summary() -> None:
    """Write and print the tally (runs last in this module, after both servers)."""
    summary = {
        "cases": TALLY.cases,
        "agree": TALLY.agree,
        "explained": sum(TALLY.explained.values()),
        "by_group": {
            k: dict(zip(["cases", "agree", "explained"], v, strict=True))
            for k, v in TALLY.by_group.items()
        },
        "departures": TALLY.explained,
        "issue_17_rows": TALLY.table,
    }
    SUMMARY.parent.mkdir(exist_ok=True)
    SUMMARY.write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    print(
        f"\ndifferential: {summary['cases']} cases, {summary['agree']} agree, "
        f"{summary['explained']} explained by a documented departure of the reference"
    )
    for group, (cases, agree, explained) in sorted(TALLY.by_group.items()):
        print(f"  {group}: {cases} cases, {agree} agree, {explained} explained")
    for row, outcome in sorted(TALLY.table.items()):
        print(f"  issue 17 row, {row}: {outcome}")
    assert TALLY.cases == 0 or TALLY.agree + sum(TALLY.explained.values()) == TALLY.cases
    if len(TALLY.by_group) == 4:  # both servers ran: each row agrees with one at least
        for row in TABLE_ROWS:
            outcomes = [o for name, o in TALLY.table.items() if name.endswith(f": {row}")]
            assert "agree" in outcomes, (row, outcomes)
