"""No 5xx from input: hypothesis throws arbitrary strings and numbers at every query
parameter and header the gateway reads, signed so the request gets past authentication
(SigV4 and SigV2, header and presigned), and unsigned or garbled. Any 5xx fails, and so does
an answer that is not S3's XML error document when it is an error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.support.gateway_world import BASE, World, open_world
from tests.support.signing import sign, sign_v2

PARAMS = [
    "partNumber",
    "max-keys",
    "prefix",
    "delimiter",
    "marker",
    "start-after",
    "continuation-token",
    "encoding-type",
    "fetch-owner",
    "list-type",
    "location",
    "tagging",
    "attributes",
    "response-content-type",
    "response-content-disposition",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-encoding",
    "versionId",
    "uploadId",
    "acl",
]
AUTH_PARAMS = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
    "x-amz-security-token",
]
HEADERS = [
    "Range",
    "If-Match",
    "If-None-Match",
    "If-Modified-Since",
    "If-Unmodified-Since",
    "X-Amz-Object-Attributes",
    "X-Forwarded-For",
    "User-Agent",
    "Content-Type",
    "Content-MD5",
]
AUTH_HEADERS = [
    "Authorization",
    "X-Amz-Date",
    "Date",
    "X-Amz-Content-Sha256",
    "X-Amz-Security-Token",
]
PATHS = [
    "/alice-data/share/photos/p1.jpg",
    "/alice-data/share/photos/",
    "/alice-data",
    "/",
    "/alice-data/share",
    "/alice-data/share/photos/missing",
]

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    # Superscript two and Arabic-Indic digits: str.isdigit() holds for both.
    st.sampled_from(["\u00b2", "\u0661\u0662", "1_0", " 1", "+1", "0x10", "1e3", "", "9" * 40]),
)
texts = st.one_of(numbers, st.text(max_size=40), st.sampled_from(["*", '"x"', "bytes=0-", "url"]))
# What an HTTP/1.1 header can carry through httpx: latin-1 without CR, LF or NUL.
header_texts = st.one_of(
    numbers.filter(lambda text: all(ord(c) < 256 for c in text)),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
        max_size=40,
    ),
    st.sampled_from(["bytes=0-1,2-3", "bytes=-", "Fri Jan  1 00:00:00 2100", 'W/"x", *']),
)


@pytest.fixture(scope="module")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(database_url, tmp_path_factory.mktemp("fuzz-storage")) as opened:
        yield opened


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(
        f"{quote(n, safe='-_.~')}={quote(v, safe='-_.~', errors='surrogatepass')}" for n, v in pairs
    )


# Answers by status: signed requests must get past authentication often enough to matter.
SEEN: dict[int, int] = {}


def _check(response: Any) -> None:
    SEEN[response.status_code] = SEEN.get(response.status_code, 0) + 1
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400 and response.content:
        root = ET.fromstring(response.content)
        assert root.tag == "Error" and root.findtext("Code"), response.text[:300]


@st.composite
def requests_(draw: st.DrawFn) -> dict[str, Any]:
    names = PARAMS + AUTH_PARAMS if draw(st.booleans()) else PARAMS
    pairs = draw(st.lists(st.tuples(st.sampled_from(names), texts), max_size=4))
    headers = draw(
        st.dictionaries(
            st.sampled_from(HEADERS + AUTH_HEADERS if draw(st.booleans()) else HEADERS),
            header_texts,
            max_size=4,
        )
    )
    return {
        "method": draw(st.sampled_from(["GET", "GET", "HEAD", "OPTIONS", "PUT"])),
        "path": draw(st.sampled_from(PATHS)),
        "query": pairs,
        "headers": headers,
        "signing": draw(st.sampled_from(["v4", "v4", "v4-url", "v2", "v2-url", "none"])),
        "key": draw(st.sampled_from(["photos", "tokenless"])),
    }


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(spec=requests_())
def test_no_input_gives_a_5xx(world: World, spec: dict[str, Any]) -> None:
    key = world.keys[spec["key"]]
    query = _query(spec["query"])
    url = BASE + spec["path"] + (f"?{query}" if query else "")
    headers = {k: v.strip() or "x" for k, v in spec["headers"].items()}
    method, signing = spec["method"], spec["signing"]
    try:
        if signing.startswith("v4"):
            presign = 300 if signing == "v4-url" else None
            signed = sign(
                url,
                access_key_id=key.access_key_id,
                secret=key.secret,
                token=key.token,
                method=method,
                headers=headers,
                presign=presign,
                when=world.clock[0],
            )
            url, headers = signed.url, dict(signed.headers.items())
        elif signing.startswith("v2"):
            presign = 300 if signing == "v2-url" else None
            signed = sign_v2(
                url,
                access_key_id=key.access_key_id,
                secret=key.secret,
                token=key.token,
                method=method,
                headers=headers,
                presign=presign,
            )
            url = signed.url
            headers = headers if presign else dict(signed.headers.items())
    except (UnicodeError, ValueError):
        signing = "none"  # botocore cannot sign it; it is still sent, unsigned
    raw = {k: v.encode("latin-1") if isinstance(v, str) else v for k, v in headers.items()}
    note(f"{method} {url} {raw}")
    _check(world.client.request(method, url, headers=raw))


@pytest.mark.parametrize(
    "query",
    [
        "X-Amz-Expires=%C2%B2",
        "partNumber=%C2%B2",
        "max-keys=%C2%B2",
        "Expires=%C2%B2&AWSAccessKeyId=FRYAAAAAAAAAAAAAAAAA&Signature=x",
        "X-Amz-Signature=%FF%FE&X-Amz-Credential=%FF",
        "prefix=%FF&delimiter=%00",
        "%FF=%FF",
        "continuation-token=%FF%FF",
    ],
)
def test_known_500s_are_4xx(world: World, query: str) -> None:
    _check(world.client.get(f"/alice-data/share/photos/p1.jpg?{query}"))
    _check(world.client.get(f"/alice-data?{query}"))


def test_zz_signed_requests_got_past_authentication() -> None:
    served = sum(n for status, n in SEEN.items() if status < 400)
    print(f"\nfuzz answers by status: {dict(sorted(SEEN.items()))}")
    assert served >= 30, SEEN
