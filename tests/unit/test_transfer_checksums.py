"""ETags and checksums as S3 computes them (values checked against SeaweedFS and moto)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from transfer.checksums import (
    Hasher,
    composite_checksum,
    is_md5_etag,
    is_plain_md5,
    multipart_etag,
    same_checksum,
)

MiB = 1024 * 1024
PART1, PART2 = b"a" * (5 * MiB), b"b" * 100


def test_multipart_etag_is_md5_of_part_md5s_with_the_count() -> None:
    md5s = [
        hashlib.md5(PART1, usedforsecurity=False).digest(),
        hashlib.md5(PART2, usedforsecurity=False).digest(),
    ]
    # What SeaweedFS and moto answered for this very upload.
    assert multipart_etag(md5s) == "16cafe8d6b8c1c55c3d339c8d69326c6-2"


def test_composite_crc32c_matches_what_the_server_answers() -> None:
    parts = []
    for body in (PART1, PART2):
        hasher = Hasher("crc32c")
        hasher.update(body)
        checksum = hasher.result().checksum
        assert checksum is not None
        parts.append(checksum)
    assert composite_checksum("crc32c", parts) == "Drnouw==-2"


def test_hasher_fed_in_pieces_equals_one_pass() -> None:
    whole = Hasher("sha256")
    whole.update(PART1 + PART2)
    pieces = Hasher("sha256")
    for start in range(0, len(PART1 + PART2), 65_537):
        pieces.update((PART1 + PART2)[start : start + 65_537])
    assert pieces.result() == whole.result()
    result = whole.result()
    assert result.size == len(PART1) + len(PART2)
    assert (
        result.md5_b64
        == base64.b64encode(hashlib.md5(PART1 + PART2, usedforsecurity=False).digest()).decode()
    )
    assert result.checksum == hashlib.sha256(PART1 + PART2).digest()


def test_md5_etag_shapes() -> None:
    assert is_md5_etag('"0123456789abcdef0123456789abcdef"')
    assert is_md5_etag("0123456789abcdef0123456789abcdef-12")
    assert not is_md5_etag("bfe9ce21599d5b18-2")
    assert not is_md5_etag("opaque-etag-from-an-encrypting-store")
    assert is_plain_md5("0123456789ABCDEF0123456789ABCDEF")
    assert not is_plain_md5("0123456789abcdef0123456789abcdef-2")


def test_a_checksum_answer_may_omit_the_part_count() -> None:
    assert same_checksum("Drnouw==-2", "Drnouw==-2")
    assert same_checksum("Drnouw==", "Drnouw==-2")
    assert not same_checksum("Drnouw==-3", "Drnouw==-2")
    assert not same_checksum(None, "Drnouw==-2")
    assert not same_checksum("AAAAAA==", "Drnouw==-2")


def test_a_hasher_given_the_source_md5_hashes_only_the_checksum() -> None:
    source = hashlib.md5(PART2, usedforsecurity=False).digest()
    taken = Hasher("crc32c", source_md5=source)
    taken.update(PART2)
    own = Hasher("crc32c")
    own.update(PART2)
    assert taken.result().md5_from_source and not own.result().md5_from_source
    assert taken.result().md5 == own.result().md5 == source
    assert taken.result().checksum == own.result().checksum
    assert taken.result().size == own.result().size == len(PART2)


def test_md5_fed_apart_from_the_checksum_gives_the_same_digest() -> None:
    whole = Hasher("crc32c")
    whole.update(PART1)
    split = Hasher("crc32c")
    split.update_checksum(PART1)
    split.update_md5(bytearray(PART1))
    assert whole.result() == split.result()


def test_a_hasher_without_md5_gives_the_checksum_alone() -> None:
    hasher = Hasher("crc32c", md5=False)
    hasher.update(PART1)
    result = hasher.result()
    with_md5 = Hasher("crc32c")
    with_md5.update(PART1)
    assert result.md5 is None and result.md5_hex is None and result.md5_b64 is None
    assert result.checksum == with_md5.result().checksum and result.size == len(PART1)
    with pytest.raises(ValueError, match="flexible checksum"):
        Hasher(None, md5=False)
