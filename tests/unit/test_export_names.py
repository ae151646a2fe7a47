"""Safe archive names: hostile keys stay inside, the mapping is injective and reversible."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from portability.exports.names import FILE_SUFFIX, is_safe, safe_path

HOSTILE = {
    "../../etc/passwd": "^2E^2E/^2E^2E/etc/passwd",
    "/abs/path": "^2Fabs/path",
    "a//b": "a^2F/b",
    "dir/": "dir^2F",
    "./x": "^2E/x",
    "x\\..\\y": "x^5C..^5Cy",
    "CON": "^43ON",
    "nul.txt": "^6Eul.txt",
    "trailing. ": "trailing.^20",
    "100%/a?b": "100^25/a^3Fb",
    "caret^": "caret^5E",
    "share/unicode/日本語/ファイル.txt": "share/unicode/日本語/ファイル.txt",
    "tab\there": "tab^09here",
}


def _unescape(segment: str) -> str:
    return re.sub(
        r"(?:\^[0-9A-F]{2})+",
        lambda m: bytes.fromhex(m.group(0).replace("^", "")).decode("utf-8"),
        segment,
    )


def _decode(path: str) -> str:
    return "/".join(_unescape(s) for s in path.split("/"))


def test_hostile_keys_map_to_safe_names() -> None:
    for key, expected in HOSTILE.items():
        assert safe_path(key) == expected, key
        assert is_safe(expected)
        assert _decode(expected) == key


def test_a_file_that_is_also_a_folder_gets_a_suffix() -> None:
    assert safe_path("photos", also_folder=True) == "photos" + FILE_SUFFIX
    assert safe_path("photos/a.jpg") == "photos/a.jpg"


def test_long_segments_are_cut_with_a_hash() -> None:
    long_a, long_b = "k" * 1000, "k" * 999 + "j"
    a, b = safe_path(long_a), safe_path(long_b)
    assert a != b
    assert all(len(s.encode()) <= 255 for s in (a, b))
    assert "^~" in a
    assert len(safe_path("é" * 200).encode()) <= 255  # never half a UTF-8 character


keys = st.lists(
    st.sampled_from([*"ab./\\%^: \x00\x7fé日", "CON", ".."]), min_size=1, max_size=30
).map("".join)


@given(keys)
def test_every_key_maps_to_a_safe_reversible_name(key: str) -> None:
    path = safe_path(key)
    assert is_safe(path), (key, path)
    assert not any(s in ("", ".", "..") for s in path.split("/"))
    assert "%" not in path  # BagIt manifests treat % specially
    assert _decode(path) == key


@given(keys, keys)
def test_distinct_keys_get_distinct_names(a: str, b: str) -> None:
    if a != b:
        assert safe_path(a) != safe_path(b)
