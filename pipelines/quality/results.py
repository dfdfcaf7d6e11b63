"""The `quality_results` table: one row per rule per micro-batch, written once per batch across restarts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

QUALITY_SCHEMA = T.StructType(
    [
        T.StructField("pipeline", T.StringType()),
        T.StructField("table", T.StringType()),
        T.StructField("query_id", T.StringType()),
        T.StructField("run_id", T.StringType()),
        T.StructField("batch_id", T.LongType()),
        T.StructField("expectation", T.StringType()),  # the rule's name (its reason code)
        T.StructField("expectation_type", T.StringType()),
        T.StructField("action", T.StringType()),
        T.StructField("success", T.BooleanType()),
        T.StructField("element_count", T.LongType()),
        T.StructField("unexpected_count", T.LongType()),
        T.StructField("observed_value", T.StringType()),  # JSON
        T.StructField("evaluated_at", T.TimestampType()),
    ]
)


@dataclass(frozen=True)
class ResultRow:
    expectation: str
    expectation_type: str
    action: str
    success: bool
    element_count: int | None
    unexpected_count: int | None
    observed_value: str | None


def results_frame(
    spark: SparkSession, pipeline: str, table: str, query_id: str, run_id: str, batch_id: int, rows: list[ResultRow],
    at: dt.datetime,
) -> DataFrame:  # fmt: skip
    """The rows of one batch's results, evaluated at `at` (an aware datetime; in the data, not as a literal of the
    plan, see `pipelines.engine.batch_time`)."""
    data = [
        (pipeline, table, query_id, run_id, batch_id, r.expectation, r.expectation_type, r.action, r.success,
         r.element_count, r.unexpected_count, r.observed_value, at)
        for r in rows
    ]  # fmt: skip
    return spark.createDataFrame(data, QUALITY_SCHEMA)


def row_rule_success(unexpected: int, element_count: int, mostly: float | None) -> bool:
    """As in Great Expectations: at most (1 - mostly) of the rows may break the rule (mostly defaults to 1)."""
    if element_count == 0:
        return True
    return (element_count - unexpected) / element_count >= (1.0 if mostly is None else mostly)
