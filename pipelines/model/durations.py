"""Durations written as Spark intervals ('10 minutes', '5 seconds', '1 hour')."""

from __future__ import annotations

import re

_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")


def seconds(text: str) -> float:
    """'10 minutes' -> 600.0; anything else is a ValueError saying what is accepted."""
    m = _DURATION.match(text.lower())
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"'{text}' is not a duration like '30 seconds', '10 minutes' or '1 hour'")
    return float(m.group(1)) * _UNITS[m.group(2)]


def micros(text: str) -> int:
    return round(seconds(text) * 1_000_000)
