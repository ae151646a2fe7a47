"""Part sizes within S3's limits, and settings checked on construction."""

from __future__ import annotations

import pytest

from transfer.config import MAX_PART_SIZE, MIN_PART_SIZE, GiB, MiB, TransferConfig
from transfer.spec import Destination, Source


@pytest.mark.parametrize(
    "size",
    [1, 16 * MiB, 100 * GiB, 160 * GiB, 160 * GiB + 1, 1024 * GiB, 5 * 1024 * GiB],
)
def test_part_size_keeps_within_10000_parts_and_5_gib(size: int) -> None:
    config = TransferConfig()
    part = config.choose_part_size(size)
    assert MIN_PART_SIZE <= part <= MAX_PART_SIZE
    assert -(-size // part) <= 10_000
    assert part % MiB == 0
    if size <= config.part_size * 10_000:
        assert part == config.part_size  # grown only when needed


def test_a_5_tib_object_needs_parts_of_525_mib() -> None:
    assert TransferConfig().choose_part_size(5 * 1024 * GiB) == 525 * MiB


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        ({"part_size": 4 * MiB}, "part_size"),
        ({"part_size": 6 * GiB, "memory_limit": 8 * GiB}, "part_size"),
        ({"memory_limit": 8 * MiB}, "memory_limit"),
        ({"verify": "sometimes"}, "verify"),
        ({"bandwidth_limit": 0}, "bandwidth_limit"),
        ({"heartbeat_seconds": 20, "lease_seconds": 30}, "heartbeat_seconds"),
        ({"object_concurrency": 0}, "object_concurrency"),
        ({"read_ahead_parts": -1}, "read_ahead_parts"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        TransferConfig(**settings)  # type: ignore[arg-type]


def test_destination_secrets_never_print_and_settings_are_checked() -> None:
    destination = Destination(
        endpoint_url="https://s3.example.com",
        region="eu-west-1",
        bucket="target",
        prefix="from-ferry/",
        access_key_id="AKIAEXAMPLE",
        secret_access_key="very-secret-value",
        session_token="token-value",
    )
    text = repr(destination) + str([destination]) + f"{destination!r}"
    assert "very-secret-value" not in text and "token-value" not in text
    assert repr(destination.secret_access_key) == "Secret('**********')"
    assert destination.target_key("a/b.txt") == "from-ferry/a/b.txt"
    with pytest.raises(Exception, match="checksum"):
        Destination("https://s3.example.com", "", "b", "", "k", "s", checksum="crc64")
    with pytest.raises(Exception, match="endpoint"):
        Destination("ftp://s3.example.com", "", "b", "", "k", "s")


def test_keys_are_taken_relative_to_the_source_prefix() -> None:
    source = Source(storage=None, bucket="backend", prefix="users/alice/photos/")  # type: ignore[arg-type]
    assert source.relative("users/alice/photos/2024/cat.jpg") == "2024/cat.jpg"
