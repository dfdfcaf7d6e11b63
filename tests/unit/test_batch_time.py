"""A micro-batch's time as data: the value written, and generated code that does not change with it."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from pyspark.sql import functions as F

from pipelines.engine import batch_time
from pipelines.engine.bronze import stamp_ingestion
from pipelines.platform.session import session_conf

AT = dt.datetime(2026, 12, 3, 23, 59, 58, 123456, tzinfo=dt.UTC)


def generated_code(df) -> str:
    """The Java source Spark generates for `df`'s plan (whole, not adaptive), without the ids that differ between two
    plans anyway."""
    jvm = df.sparkSession._jvm
    with session_conf(df.sparkSession, "spark.sql.adaptive.enabled", "false"):
        text = jvm.org.apache.spark.sql.api.python.PythonSQLUtils.explainString(df._jdf.queryExecution(), "codegen")
    return re.sub(r"#\d+|plan_id=\d+", "", text)


def test_micros_is_exact_and_refuses_a_naive_time():
    assert batch_time.micros(dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=dt.UTC)) == 1_000_005
    later = dt.datetime(2026, 12, 4, 1, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert batch_time.micros(later) == batch_time.micros(AT)  # the same instant in another zone
    with pytest.raises(ValueError, match="no time zone"):
        batch_time.micros(dt.datetime(2026, 12, 3))


def test_stamp_writes_the_time_and_its_date_in_the_session_zone(spark):
    rows = spark.createDataFrame([(1, "a"), (2, "b")], "id int, s string")
    with_time = stamp_ingestion(rows, AT)
    assert with_time.columns == ["id", "s", "ingestion_time", "ingestion_date"]
    got = with_time.select("id", F.unix_micros("ingestion_time").alias("us"),
                           (F.col("ingestion_date") == F.to_date("ingestion_time")).alias("same_day")).collect()  # fmt: skip
    assert sorted((r.id, r.us, r.same_day) for r in got) == [(1, batch_time.micros(AT), True), (2, batch_time.micros(AT), True)]
    assert stamp_ingestion(rows.limit(0), AT).count() == 0


def test_the_generated_code_is_the_same_whatever_the_time(spark):
    rows = spark.range(100).withColumn("s", F.col("id").cast("string")).where(F.col("id") % 3 != 0)
    later = AT + dt.timedelta(seconds=7, microseconds=1)
    stamped = [generated_code(batch_time.stamp(rows, t, "silver_time")) for t in (AT, later)]
    assert "GeneratedIteratorForCodegenStage" in stamped[0]
    assert stamped[0] == stamped[1]
    # what it replaces: the time as a literal is a constant of the source, so each batch compiles a new class
    literal = [generated_code(rows.withColumn("silver_time", F.lit(t))) for t in (AT, later)]
    assert literal[0] != literal[1]
