"""The one parser for numbers that arrive on the wire."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.validation import INT64_MAX, parse_decimal


@pytest.mark.parametrize(
    "text", ["", "²", "١٢", "+1", "-1", " 1", "1 ", "1_0", "0x10", "1.0", "1e3", "9" * 21]
)
def test_refuses_anything_but_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


def test_bounds() -> None:
    assert parse_decimal("007") == 7
    assert parse_decimal(str(INT64_MAX)) == INT64_MAX
    with pytest.raises(ValueError, match="between"):
        parse_decimal(str(INT64_MAX + 1))
    with pytest.raises(ValueError, match="between 1 and 10000"):
        parse_decimal("0", minimum=1, maximum=10_000)


@given(st.text(max_size=30))
def test_any_text_is_a_number_or_a_value_error(text: str) -> None:
    try:
        value = parse_decimal(text)
    except ValueError:
        return
    assert str(value) == text.lstrip("0") or value == 0
