"""E1c's measure: the driver JVM's CPU time per record sent."""

from __future__ import annotations

import pytest

from pipelines.bench.cpu import cpu_seconds, per_record_us
from pipelines.errors import LakepipeError


def test_cpu_per_record_is_microseconds_of_the_measured_cpu_over_the_records_sent():
    assert per_record_us(45.0, 150_000) == pytest.approx(300.0)
    assert per_record_us(9.0, 450_000) == pytest.approx(20.0)


def test_a_window_without_records_is_an_error_not_a_figure():
    with pytest.raises(LakepipeError, match="no records"):
        per_record_us(3.0, 0)


def test_the_driver_jvm_cpu_time_grows_with_the_work_it_runs(spark):
    before = cpu_seconds(spark)
    spark.range(2_000_000).selectExpr("id % 13 AS k", "sha2(cast(id AS string), 256) AS h").groupBy("k").count().collect()
    after = cpu_seconds(spark)
    assert before > 0
    assert after - before > 0.05  # two million SHA-256 hashes take well over 50 ms of CPU
