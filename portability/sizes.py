"""Byte counts as people read them, in binary units: the CLI, the dashboard and the mails."""

from __future__ import annotations


def size_text(value: float) -> str:
    """`512 B`, `1.5 KiB`, … up to TiB, one decimal above bytes."""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(amount) < 1024:
            return f"{amount:.0f} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{amount:.1f} TiB"
