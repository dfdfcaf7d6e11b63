"""A micro-batch's time, written into its rows as data rather than as a constant of the generated code.

Spark writes a timestamp literal (`current_timestamp()`, `lit(now)`, the batch time of a streaming query) into the
Java source it generates for a plan. A new value each micro-batch makes a new source for the same plan, which
Janino compiles again and which takes a slot of Spark's cache of generated classes. Here the time is a one-row
table joined to the rows (broadcast; a local relation, so no job and no generated code of its own): the rows'
plan reads it as data, and its generated source is the same every micro-batch. At 2,500 events/s the clickstream
pipeline compiled 39-57 classes per 30 s before, 6-14 after (the gold queries' watermark predicates, which Spark
writes). The JIT's compile time did not fall with them: it is the warm-up of Spark's own code (README, Benchmarks,
"Session 27").
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def now() -> dt.datetime:
    """The current time, in UTC (an aware datetime: Spark converts it exactly, whatever the local time zone)."""
    return dt.datetime.now(dt.UTC)


def micros(at: dt.datetime) -> int:
    """Microseconds since the epoch of `at` (an aware datetime)."""
    if at.tzinfo is None:
        raise ValueError(f"batch time {at} has no time zone: give an aware datetime (e.g. batch_time.now())")
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def stamp(rows: DataFrame, at: dt.datetime, time_column: str, date_column: str | None = None) -> DataFrame:
    """`rows` with `time_column` = `at` (a timestamp) and, if named, `date_column` = its date in the session's time
    zone, as their last columns (pure)."""
    value = f"timestamp_micros({micros(at)}L)"
    values = f"{value}, to_date({value})" if date_column else value
    names = f"`{time_column}`, `{date_column}`" if date_column else f"`{time_column}`"
    one_row = rows.sparkSession.sql(f"SELECT * FROM VALUES ({values}) AS batch_time({names})")
    return rows.crossJoin(F.broadcast(one_row))
