"""TargetFindings: each change is made once, says so once, and reports whether it changed."""

from __future__ import annotations

import logging

import pytest

from transfer.findings import TargetFindings


def findings() -> TargetFindings:
    return TargetFindings(algorithm="crc32c", server_side=True, check_target=True)


def test_a_refused_checksum_changes_the_algorithm_once() -> None:
    found = findings()
    assert found.refuse_checksum() is True
    assert found.algorithm is None
    assert found.refuse_checksum() is False  # the job's record is written once


def test_server_side_copy_refused_streams_from_then_on() -> None:
    found = findings()
    found.refuse_server_side("AccessDenied")
    assert not found.server_side and not found.server_side_proven


def test_an_empty_target_needs_no_head_per_object() -> None:
    found = findings()
    found.found_target_empty(True)
    assert not found.check_target
    found.found_target_empty(False)
    assert found.check_target


def test_a_source_etag_that_is_not_the_md5_is_distrusted_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    found = findings()
    with caplog.at_level(logging.WARNING, logger="transfer"):
        found.distrust_source_md5("a.txt", "00ff", "ff00")
        found.distrust_source_md5("b.txt", "11ee", "ee11")
    assert not found.source_md5
    assert caplog.text.count("is not the MD5 of its bytes") == 1


def test_the_probe_answer_and_its_withdrawal() -> None:
    found = findings()
    assert found.checksum_checked is None
    found.probed("crc32c", checked=True)
    assert found.checksum_checked is True
    found.checksum_unanswered()
    assert found.checksum_checked is False
