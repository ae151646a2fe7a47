"""Pull receipts: when do audited GETs add up to a whole object."""

from __future__ import annotations

import pytest

from portability.exports.exceptions import InvalidExport
from portability.exports.receipt import covered
from portability.exports.settings import ExportSettings, MiB


def test_a_whole_get_covers() -> None:
    assert covered([(200, None, 100)], 100)
    assert not covered([(200, None, 60)], 100)  # the client went away


def test_ranges_must_cover_every_byte() -> None:
    assert covered([(206, "bytes=0-49", 50), (206, "bytes=50-", 50)], 100)
    assert covered([(206, "bytes=50-99", 50), (206, "bytes=0-59", 60)], 100)
    assert not covered([(206, "bytes=0-49", 50), (206, "bytes=51-", 49)], 100)
    assert covered([(206, "bytes=0-49", 50), (206, "bytes=-50", 50)], 100)
    assert not covered([(206, "garbage", 100)], 100)
    assert covered([(200, None, 60), (206, "bytes=60-", 40)], 100)


def test_empty_objects_need_one_get() -> None:
    assert covered([(200, None, 0)], 0)
    assert not covered([], 0)


def test_settings_are_validated() -> None:
    ExportSettings(part_size=5 * MiB)
    for bad in (
        {"part_size": MiB},
        {"upload_chunk_size": MiB},
        {"link_ttl_seconds": 604_801},
        {"compression_level": 9},
    ):
        with pytest.raises(InvalidExport):
            ExportSettings(**bad)  # type: ignore[arg-type]
