"""The dedup lookup window (pure): hours widened by the horizon, merged, capped; and which silver rows it keeps."""

from __future__ import annotations

import datetime as dt

from pipelines.engine.dedup import (
    DEDUP_HASH_PROPERTY,
    HOUR,
    batch_hours,
    hashed_keys,
    in_ranges,
    key_hash,
    lookup_ranges,
)
from pipelines.model.contract import FieldSpec


def test_each_hour_is_widened_by_the_horizon_and_neighbours_merge():
    assert lookup_ranges([10], 600) == [(10 * HOUR - 600, 11 * HOUR + 600)]
    assert lookup_ranges([10, 11, 13], 0) == [(10 * HOUR, 12 * HOUR), (13 * HOUR, 14 * HOUR)]
    assert lookup_ranges([10, 12], HOUR) == [(9 * HOUR, 14 * HOUR)], "ranges that touch once widened merge"
    assert lookup_ranges([12, 10, 12], 0) == [(10 * HOUR, 11 * HOUR), (12 * HOUR, 13 * HOUR)], "order and repeats"


def test_a_batch_over_many_hours_is_looked_up_in_a_bounded_number_of_ranges():
    hours = [h * 24 for h in range(200)]  # one hour a day for 200 days
    ranges = lookup_ranges(hours, 0, max_ranges=16)
    assert len(ranges) == 16
    assert all(any(a <= h * HOUR and (h + 1) * HOUR <= b for a, b in ranges) for h in hours), "every hour still covered"


def test_only_rows_near_the_batch_hours_are_compared(spark):
    t = lambda d, h, m=0: dt.datetime(2026, 1, d, h, m)  # noqa: E731
    rows = [("old", t(1, 10)), ("same_hour", t(20, 10, 59)), ("within_horizon", t(20, 11, 20)),
            ("beyond_horizon", t(20, 13, 0)), ("no_time", None)]  # fmt: skip
    silver = spark.createDataFrame(rows, "event_id string, event_time timestamp").selectExpr(
        "*", "to_date(event_time) AS event_date"
    )
    hour = int(dt.datetime(2026, 1, 20, 10, tzinfo=dt.UTC).timestamp()) // HOUR
    ranges = lookup_ranges([hour], 1800)
    kept = {r.event_id for r in silver.where(in_ranges("event_time", ranges, with_nulls=False)).collect()}
    assert kept == {"same_hour", "within_horizon"}
    with_nulls = {r.event_id for r in silver.where(in_ranges("event_time", ranges, with_nulls=True)).collect()}
    assert with_nulls == {"same_hour", "within_horizon", "no_time"}


def test_the_batch_hours_and_its_size_come_from_one_light_job(spark):
    values = [b'{"event_time":"2026-01-20T10:05:00Z"}', b'{"event_time":"2026-01-20T10:59:59Z"}',
              b'{"event_time":"2026-01-20T12:00:00Z"}', b'{"page":"/"}', b"not json"]  # fmt: skip
    raw = spark.createDataFrame([(v,) for v in values], "value binary")
    ten = int(dt.datetime(2026, 1, 20, 10, tzinfo=dt.UTC).timestamp()) // HOUR
    assert batch_hours(raw, FieldSpec("event_time", "timestamp")) == {ten: 2, ten + 2: 1, None: 2}


def test_the_dedup_hash_is_of_every_key_and_used_only_for_the_keys_a_table_was_created_with(spark):
    rows = spark.createDataFrame([("e1", 1), ("e1", 2), ("e2", 1), ("e1", 1)], "event_id string, lsn int")
    one = [r.h for r in rows.select(key_hash(["event_id"]).alias("h")).collect()]
    two = [r.h for r in rows.select(key_hash(["event_id", "lsn"]).alias("h")).collect()]
    assert one[0] == one[1] == one[3] != one[2], "equal keys, equal hashes"
    assert two[0] == two[3] and len({two[0], two[1], two[2]}) == 3, "a composite key hashes all its parts"
    assert hashed_keys({DEDUP_HASH_PROPERTY: "event_id"}, ["event_id"])
    assert not hashed_keys({DEDUP_HASH_PROPERTY: "event_id"}, ["event_id", "lsn"]), "hashes of other keys"
    assert not hashed_keys({}, ["event_id"]), "a table created before: its older rows have no hash"
