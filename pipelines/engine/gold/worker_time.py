"""Timestamps inside Python stateful processors, as PySpark hands them over: naive, in the worker's local time."""

from __future__ import annotations

import datetime as dt


def to_ms(t: dt.datetime) -> int:
    """Epoch milliseconds of a timestamp received from Spark."""
    return round(t.timestamp() * 1000)


def from_ms(ms: int) -> dt.datetime:
    """The timestamp Spark reads back as epoch milliseconds `ms`."""
    return dt.datetime.fromtimestamp(ms / 1000)
