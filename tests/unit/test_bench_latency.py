"""The pure parts of the latency benchmarks: when a micro-batch covers a table version or a Kafka record, the
minimal CDC job's transformation, and percentiles."""

from __future__ import annotations

import pandas as pd
from chispa import assert_df_equality

from pipelines.bench.cdc import first_end_past, newest_per_key
from pipelines.bench.latency import ready_times, summary


def test_a_version_is_ready_when_the_first_batch_reading_past_it_ends():
    # (batch end ms, end reservoirVersion, end index): index -1 means "version not started yet".
    ends = [(1000.0, 3, -1), (2500.0, 5, -1), (4000.0, 6, 0), (3000.0, 7, -1)]
    ready = ready_times(ends, [2, 3, 4, 5, 6, 7, 8])
    assert ready == {2: 1000.0, 3: 2500.0, 4: 2500.0, 5: 3000.0, 6: 3000.0}, (
        "version 3 is not covered by an offset (3, -1); the earliest covering end wins; 7 and 8 are not ready"
    )


def test_summary_reports_percentiles_and_what_was_not_ready():
    ms = pd.Series(range(1, 101), dtype=float)
    out = summary(ms, missing=4)
    assert out == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "records": 100, "not_ready": 4}


def test_a_kafka_record_is_current_when_the_first_batch_taking_it_ends():
    # (batch end ms, {partition: end offset}): an end offset is the next offset to read, so it takes those below it
    ends = [(1000.0, {"0": 5}), (2000.0, {"0": 9, "1": 3}), (3000.0, {"0": 12, "1": 3})]
    assert first_end_past(ends, 0, 4) == 1000.0
    assert first_end_past(ends, 0, 5) == 2000.0, "offset 5 is the first one batch 0 did not take"
    assert first_end_past(ends, 1, 2) == 2000.0, "a partition first seen in a later batch"
    assert first_end_past(ends, 1, 3) is None and first_end_past(ends, 2, 0) is None


def test_the_minimal_cdc_job_takes_each_keys_newest_change_of_the_batch(spark):
    columns = "customer_id string, tier string, op string, lsn bigint"
    changes = spark.createDataFrame(
        [("u1", "gold", "u", 30), ("u1", "bronze", "c", 10), ("u2", None, "d", 25), ("u2", "silver", "u", 20),
         ("u3", "gold", "r", 5)], columns)  # fmt: skip
    expected = spark.createDataFrame([("u1", "gold", "u", 30), ("u2", None, "d", 25), ("u3", "gold", "r", 5)], columns)
    assert_df_equality(newest_per_key(changes), expected, ignore_row_order=True)
