"""Sizes written as Spark size strings ('16m', '512k', '1g'): what Spark and Delta accept for their byte options."""

from __future__ import annotations

import re

_UNITS = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+)\s*([a-z]*)\s*$")


def size_bytes(text: str) -> int:
    """'16m' -> 16777216 (a bare number is bytes); anything else, or 0, is a ValueError saying what is accepted."""
    m = _SIZE.match(str(text).lower())
    if not m or m.group(2) not in ("", *_UNITS) or int(m.group(1)) == 0:
        raise ValueError(f"'{text}' is not a size like '512k', '16m' or '1g'")
    return int(m.group(1)) * _UNITS.get(m.group(2), 1)
