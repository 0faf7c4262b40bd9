"""Byte counts in words, for messages that name a limit ("10 MiB (10485760 bytes)")."""

from __future__ import annotations

_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def human_bytes(n: int) -> str:
    """`10485760` -> "10 MiB", `1536` -> "1.5 KiB", `1` -> "1 byte". Exact multiples of
    a unit print without decimals, so a configured cap reads as it was meant."""
    for unit, size in _UNITS:
        if n >= size:
            if n % size == 0:
                return f"{n // size} {unit}"
            return f"{n / size:.1f} {unit}"
    return "1 byte" if n == 1 else f"{n} bytes"
