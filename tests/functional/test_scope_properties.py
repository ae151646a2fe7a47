"""Property: no sequence of listings and reads leaves a credential's scope.

Each example builds a fresh bucket whose keys come from an alphabet chosen to trip prefix
logic (separators, characters sorting either side of '/', multi-byte and control
characters, keys that are prefixes of each other and of the granted prefixes), issues a
credential for random prefixes, and runs a random sequence of ListObjectsV2 / ListObjects
walks and GetObject / HeadObject reads through the in-process gateway with botocore-signed
requests, on the local backend and a real database.

Every answer is compared with a pure-Python model: S3 listing semantics applied to the
in-scope keys only. That one comparison encodes the ancestor rule exactly: a listing above
the scope shows the way in (a common prefix leading to in-scope keys) and nothing else. The
model takes the scope from the prefixes as granted, not as `sts.scope` normalises them, so a
normaliser that changes meaning fails here too.
"""

from __future__ import annotations

import itertools
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from db.models import User
from gateway.app import GatewayApp, GatewaySettings
from gateway.audit import AuditWriter
from portability.accounts import create_user
from portability.buckets import create_bucket
from storage.local import LocalStorage
from sts.issue import IssueRequest, issue
from sts.store import CredentialStore
from tests.support.signing import sign

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
BASE = "http://testserver"
# '-' and '.' sort just below '/', '~' and 'é' above every ASCII letter, '\x7f' is a control
# character, '%', '+' and ' ' stress URL encoding.
ALPHABET = "ab/-.%+ é\x7f~"
DELIMITERS = ["/", "//", "a", "-", "/a", "é", "%", " ", "ab/", "+"]
# Backend prefixes, with stored keys around them that no credential may ever see.
DECOYS = {"": (), "t/": ("t", "t-", "t.x", "s/x", "u"), "t": ("s", "s/x", "u")}
DECOY_BODY = b"DECOY: outside the bucket's backend prefix"

names = st.text(ALPHABET, min_size=1, max_size=5)


@dataclass(frozen=True)
class Case:
    backend_prefix: str
    keys: frozenset[str]
    grant: tuple[str, ...]  # the prefixes as requested, before normalisation

    def allowed(self, name: str) -> bool:
        return any(name.startswith(p) for p in self.grant)

    def way_in(self, name: str) -> bool:
        """A name above the scope that leads into it (`share/` when the scope is `share/x/`)."""
        return not self.allowed(name) and any(p.startswith(name) and p != name for p in self.grant)

    def listable(self, prefix: str) -> bool:
        return any(prefix.startswith(p) or p.startswith(prefix) for p in self.grant)

    def visible(self) -> list[str]:
        return sorted(k for k in self.keys if self.allowed(k))

    def body(self, key: str) -> bytes:
        # Distinct for every key, so a body identifies the object it came from.
        return f"<{key}>".encode() * (1 + len(key) % 3)


def model_listing(case: Case, prefix: str, delimiter: str, after: str) -> list[tuple[str, bool]]:
    """S3's listing of the in-scope keys: (name, is a common prefix), in order.

    Rolled up relative to `prefix`; an entry is shown only if its name sorts after `after`
    (a common prefix that contains `after` is therefore not repeated on the next page).
    """
    out: list[tuple[str, bool]] = []
    for key in case.visible():
        if not key.startswith(prefix):
            continue
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = (key[: cut + len(delimiter)], True) if cut >= 0 else (key, False)
        if entry[0] > after and (not out or out[-1] != entry):
            out.append(entry)
    return out


@st.composite
def cases(draw: st.DrawFn) -> Case:
    keys = set(draw(st.lists(names, max_size=10)))
    starts = sorted({k[:i] for k in keys for i in range(len(k) + 1)}) or [""]
    grant = draw(st.lists(st.one_of(st.sampled_from(starts), names), min_size=1, max_size=3))
    for p in grant:
        # The granted prefix itself as a key, with and without a trailing slash, and the
        # names just above and below it; or nothing at all under it.
        if draw(st.booleans()):
            keys |= {p, p + "/", p[:-1], p + "a", p.rstrip("/")}
    keys.discard("")
    backend_prefix = draw(st.sampled_from(sorted(DECOYS)))
    return Case(backend_prefix, frozenset(keys), tuple(grant))


@dataclass(frozen=True)
class ListV2:
    prefix: str
    delimiter: str
    start_after: str
    max_keys: int
    url: bool
    replay: int  # which continuation token of the walk to use again afterwards


@dataclass(frozen=True)
class ListV1:
    prefix: str
    delimiter: str
    marker: str
    max_keys: int
    url: bool


@dataclass(frozen=True)
class Forged:
    """A continuation token nobody issued."""

    prefix: str
    token: str


@dataclass(frozen=True)
class Read:
    method: str
    key: str
    range: tuple[int, int] | None


Op = ListV2 | ListV1 | Forged | Read


def operations(case: Case) -> st.SearchStrategy[list[Op]]:
    relevant = sorted(
        {k[:i] for k in case.keys | set(case.grant) for i in range(len(k) + 1)}
        | {p + "/" for p in case.grant}
    )
    names_ = st.one_of(st.sampled_from(relevant), names)
    prefixes = st.one_of(st.just(""), names_)
    delimiters = st.one_of(st.just(""), st.sampled_from(DELIMITERS), names)
    max_keys = st.one_of(st.integers(1, 5), st.just(1000))
    op: st.SearchStrategy[Op] = st.one_of(
        st.builds(
            ListV2,
            prefixes,
            delimiters,
            st.one_of(st.just(""), names_),
            max_keys,
            st.booleans(),
            st.integers(0, 20),
        ),
        st.builds(
            ListV1, prefixes, delimiters, st.one_of(st.just(""), names_), max_keys, st.booleans()
        ),
        st.builds(Forged, prefixes, st.text("ABCabc019_-=+/%", max_size=8)),
        st.builds(
            Read,
            st.sampled_from(["GET", "HEAD"]),
            names_.filter(bool),
            st.none() | st.tuples(st.integers(0, 12), st.integers(0, 12)).map(sorted).map(tuple),
        ),
    )
    return st.lists(op, min_size=1, max_size=6)


@dataclass
class World:
    client: TestClient
    storage: LocalStorage
    sessions: Any
    master_key: bytes
    user: User
    counter: Iterator[int]


@dataclass
class Grantee:
    """One example's bucket and credential."""

    world: World
    case: Case
    bucket: str
    access_key_id: str
    secret: str
    token: str | None

    def request(self, method: str, path: str, query: str = "", **headers: str) -> Any:
        signed = sign(
            BASE + path + ("?" + query if query else ""),
            access_key_id=self.access_key_id,
            secret=self.secret,
            token=self.token,
            method=method,
            headers=headers,
            when=datetime.now(UTC),
        )
        url = str(signed.url)
        return self.world.client.request(method, url, headers=dict(signed.headers.items()))

    def list(self, params: dict[str, str]) -> Any:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        return self.request("GET", f"/{self.bucket}", query)


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root: Path = tmp_path_factory.mktemp("scope-properties")
    storage = LocalStorage(root)
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    master_key = secrets.token_bytes(32)
    audit = AuditWriter(sessions, interval=0.05)
    app = GatewayApp(
        storage=storage,
        credentials=CredentialStore(sessions, master_key, max_age=60.0),
        audit=audit,
        settings=GatewaySettings(),
    )

    async def seed() -> User:
        async with sessions.begin() as session:
            user, _ = await create_user(session, f"prop-{secrets.token_hex(4)}@example.com")
            return user

    with TestClient(app) as client:
        user = client.portal.call(seed)  # type: ignore[union-attr]
        yield World(client, storage, sessions, master_key, user, itertools.count())
        client.portal.call(audit.close)  # type: ignore[union-attr]  # before the engine goes
        client.portal.call(engine.dispose)  # type: ignore[union-attr]


def grantee(world: World, case: Case) -> Grantee:
    n = next(world.counter)
    name, backend = f"prop-{n}", f"prop-backend-{n}"

    async def body(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def build() -> Grantee:
        async with world.sessions.begin() as session:
            bucket = await create_bucket(
                session,
                world.storage,
                name,
                owner_email=world.user.email,
                backend_bucket=backend,
                backend_prefix=case.backend_prefix,
            )
            for key in sorted(case.keys):
                data = case.body(key)
                await world.storage.put(
                    backend, case.backend_prefix + key, body(data), size=len(data)
                )
            for decoy in DECOYS[case.backend_prefix]:
                await world.storage.put(backend, decoy, body(DECOY_BODY), size=len(DECOY_BODY))
            issued = await issue(
                session,
                world.master_key,
                world.user,
                bucket,
                IssueRequest(prefixes=case.grant),
                now=datetime.now(UTC),
            )
        return Grantee(
            world,
            case,
            name,
            issued.credential.access_key_id,
            issued.secret,
            issued.session_token,
        )

    result: Grantee = world.client.portal.call(build)  # type: ignore[union-attr]
    return result


# checks


def code(response: Any) -> tuple[int, str | None]:
    text = ET.fromstring(response.content).findtext("Code") if response.content else None
    return response.status_code, text


@dataclass
class ListPage:
    entries: list[tuple[str, bool]]
    truncated: bool
    next_token: str | None
    next_marker: str | None


def parse_page(g: Grantee, response: Any, *, url: bool, max_keys: int) -> ListPage:
    assert response.status_code == 200, response.text
    root = ET.fromstring(response.content)

    def text(e: ET.Element) -> str:
        return unquote_plus(e.text or "") if url else e.text or ""

    keys = [text(e) for c in root.iter(f"{NS}Contents") for e in c.iter(f"{NS}Key")]
    cps = [text(e) for c in root.iter(f"{NS}CommonPrefixes") for e in c.iter(f"{NS}Prefix")]
    for name in keys:
        assert g.case.allowed(name), f"a key outside the scope: {name!r}"
    for name in cps:
        assert g.case.allowed(name) or g.case.way_in(name), f"a prefix outside: {name!r}"
    assert len(keys) + len(cps) <= max_keys
    entries = sorted([(k, False) for k in keys] + [(p, True) for p in cps])
    next_marker = root.findtext(f"{NS}NextMarker")
    return ListPage(
        entries,
        root.findtext(f"{NS}IsTruncated") == "true",
        root.findtext(f"{NS}NextContinuationToken"),
        unquote_plus(next_marker) if url and next_marker is not None else next_marker,
    )


def denied_listing(g: Grantee, params: dict[str, str]) -> bool:
    """True (after checking the refusal) when the requested prefix is outside the scope."""
    if g.case.listable(params.get("prefix", "")):
        return False
    assert code(g.list(params)) == (403, "AccessDenied"), params
    return True


def run_v2(g: Grantee, op: ListV2) -> None:
    params = {"list-type": "2", "prefix": op.prefix, "max-keys": str(op.max_keys)}
    if op.delimiter:
        params["delimiter"] = op.delimiter
    if op.start_after:
        params["start-after"] = op.start_after
    if op.url:
        params["encoding-type"] = "url"
    if denied_listing(g, params):
        return
    expected = model_listing(g.case, op.prefix, op.delimiter, op.start_after)
    pages: list[ListPage] = []
    token: str | None = None
    for _ in range(len(expected) // op.max_keys + 2):
        query = {**params, "continuation-token": token} if token else params
        pages.append(parse_page(g, g.list(query), url=op.url, max_keys=op.max_keys))
        if not pages[-1].truncated:
            break
        token = pages[-1].next_token
        assert token, "a truncated page without a continuation token"
    else:
        pytest.fail(f"pagination did not end: {params}")
    assert [e for p in pages for e in p.entries] == expected, params
    # A token from an earlier page resumes exactly where that page ended.
    tokens = [(i, p.next_token) for i, p in enumerate(pages) if p.next_token]
    if tokens:
        i, again = tokens[op.replay % len(tokens)]
        rest = parse_page(
            g, g.list({**params, "continuation-token": again}), url=op.url, max_keys=op.max_keys
        )
        assert rest.entries == pages[i + 1].entries


def run_v1(g: Grantee, op: ListV1) -> None:
    params = {"prefix": op.prefix, "max-keys": str(op.max_keys)}
    if op.delimiter:
        params["delimiter"] = op.delimiter
    if op.url:
        params["encoding-type"] = "url"
    if denied_listing(g, params):
        return
    expected = model_listing(g.case, op.prefix, op.delimiter, op.marker)
    seen: list[tuple[str, bool]] = []
    marker = op.marker
    for _ in range(len(expected) // op.max_keys + 2):
        page = parse_page(g, g.list({**params, "marker": marker}), url=op.url, max_keys=op.max_keys)
        seen += page.entries
        if not page.truncated:
            break
        # Without a delimiter S3 sends no NextMarker; clients continue from the last key.
        next_marker = page.next_marker if op.delimiter else page.entries[-1][0]
        assert next_marker, "a truncated V1 page without a marker"
        marker = next_marker
    else:
        pytest.fail(f"pagination did not end: {params}")
    assert seen == expected, params


def run_forged(g: Grantee, op: Forged) -> None:
    params = {"list-type": "2", "prefix": op.prefix, "continuation-token": op.token}
    response = g.list(params)
    # A token that does not decode is refused before the prefix is looked at.
    if response.status_code == 400:
        assert code(response) == (400, "InvalidArgument")
        return
    if not g.case.listable(op.prefix):
        assert code(response) == (403, "AccessDenied"), params
        return
    page = parse_page(g, response, url=False, max_keys=1000)
    assert set(page.entries) <= set(model_listing(g.case, op.prefix, "", ""))


def run_read(g: Grantee, op: Read) -> None:
    headers = {"Range": f"bytes={op.range[0]}-{op.range[1]}"} if op.range else {}
    # Every character escaped, '.' too: an HTTP client drops `.` and `..` path segments.
    path = quote(op.key, safe="").replace(".", "%2E")
    response = g.request(op.method, f"/{g.bucket}/{path}", **headers)
    head = op.method == "HEAD"
    if not g.case.allowed(op.key):
        # A folder name above the scope is "no such key"; anything else is refused, whether
        # or not the object exists. Neither answer carries a byte of an object.
        want = 404 if g.case.way_in(op.key) else 403
        assert response.status_code == want, (op, response.status_code)
        if not head:
            assert code(response) == (want, "NoSuchKey" if want == 404 else "AccessDenied")
        return
    if op.key not in g.case.keys:
        assert response.status_code == 404, op
        return
    data = g.case.body(op.key)
    if op.range is None:
        assert response.status_code == 200
        assert response.content == (b"" if head else data)
        assert response.headers["content-length"] == str(len(data))
    elif op.range[0] >= len(data):
        assert response.status_code == 416
    else:
        part = data[op.range[0] : op.range[1] + 1]
        assert response.status_code == 206
        assert response.content == (b"" if head else part)
        assert response.headers["content-length"] == str(len(part))


def run(g: Grantee, op: Op) -> None:
    if isinstance(op, ListV2):
        run_v2(g, op)
    elif isinstance(op, ListV1):
        run_v1(g, op)
    elif isinstance(op, Forged):
        run_forged(g, op)
    else:
        run_read(g, op)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases(), data=st.data())
def test_nothing_outside_the_scope_is_ever_listed_or_read(
    world: World, case: Case, data: st.DataObject
) -> None:
    note(repr(case))
    g = grantee(world, case)
    for op in data.draw(operations(case)):
        run(g, op)


def test_a_marker_naming_a_granted_prefix_moves_past_it(world: World) -> None:
    """Found by the property above: when the scope is `a` and the object `a` exists, a page
    ending at `a` was followed by `a` again, for ever (V1 marker and V2 token alike)."""
    g = grantee(world, Case("", frozenset({"a", "a/", "aa", "b"}), ("a",)))
    run_v1(g, ListV1("", "", "", 1, False))
    run_v2(g, ListV2("", "", "", 1, False, 0))
    run_v2(g, ListV2("", "", "a", 5, False, 0))
