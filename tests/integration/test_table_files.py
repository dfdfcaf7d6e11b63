"""Silver's data files as a query keeps them from Delta's commits (`TableFiles`), on real Delta tables: the files
Delta itself would read, every commit followed (appends, a replaceWhere, OPTIMIZE), and the table read through
Delta where its files are not plain Parquet (deletion vectors) or its log cannot be followed."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from pyspark.sql import functions as F

from pipelines.engine.bronze import BRONZE_SCHEMA
from pipelines.engine.dedup import existing_rows
from pipelines.engine.delta_io import table_version
from pipelines.engine.silver import silver_schema
from pipelines.engine.table_files import TableFiles
from tests.support import clickstream_tables

pytestmark = [pytest.mark.slow]

DAY = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


@pytest.fixture
def clickstream(spark, tmp_path):
    return clickstream_tables(spark, tmp_path)


def append(spark, p, hour: int, ids: list[str], at_minute: int = 0) -> None:  # noqa: ANN001
    """Silver rows of `ids` at DAY + hour (one commit)."""
    t = DAY + dt.timedelta(hours=hour, minutes=at_minute)
    rows = [{"event_id": i, "event_time": t, "event_date": t.date(), "payload_hash": f"h-{i}"} for i in ids]
    spark.createDataFrame(rows, silver_schema(p.contract)).write.format("delta").mode("append").save(p.layout.silver.path)


def batch(spark, hour: int):  # noqa: ANN001, ANN201
    """A raw micro-batch of one record at DAY + hour."""
    t = DAY + dt.timedelta(hours=hour, minutes=30)
    event = {"event_id": "new", "event_type": "page_view", "event_time": t.isoformat().replace("+00:00", "Z"),
             "user_id": "u", "session_id": "s"}  # fmt: skip
    return spark.createDataFrame([(b"u", json.dumps(event).encode(), "t", 0, 0, t, 0, [], t, t.date())], BRONZE_SCHEMA)


def lookup(spark, p, raw, files: TableFiles | None) -> list[tuple]:  # noqa: ANN001
    rows = existing_rows(spark, p.layout.silver.path, raw, p.contract.field("event_time"), p.spec.dedup_keys, 3600,
                         files=files).rows  # fmt: skip
    return sorted(tuple(r) for r in rows.collect())


def delta_files(spark, path: str) -> set[str]:  # noqa: ANN001
    return {f.removeprefix("file:") for f in spark.read.format("delta").load(path).inputFiles()}


def listed(files: TableFiles, spark, path: str) -> set[str]:  # noqa: ANN001
    return {f.path for f in files.at(spark, table_version(spark, path))}


def test_the_files_and_the_lookup_are_those_delta_reads_through_every_kind_of_commit(spark, clickstream):
    p = clickstream
    path = p.layout.silver.path
    files = TableFiles(path, "event_time")
    assert listed(files, spark, path) == set() and lookup(spark, p, batch(spark, 9), files) == []
    append(spark, p, 9, ["a1", "a2"])
    append(spark, p, 10, ["b1"])
    append(spark, p, 20, ["c1"])
    for kind in ("appends", "replaceWhere", "OPTIMIZE"):
        if kind == "replaceWhere":  # a backfill's rewrite of hour 10: the old file removed, a new one added
            t = DAY + dt.timedelta(hours=10)
            rows = [{"event_id": "b2", "event_time": t, "event_date": t.date(), "payload_hash": "h-b2"}]
            hour = f"event_time >= '{t.isoformat()}' AND event_time < '{(t + dt.timedelta(hours=1)).isoformat()}'"
            spark.createDataFrame(rows, silver_schema(p.contract)).write.format("delta").mode("overwrite").option(
                "replaceWhere", hour).save(path)  # fmt: skip
        if kind == "OPTIMIZE":
            spark.sql(f"OPTIMIZE delta.`{path}`")
        assert listed(files, spark, path) == delta_files(spark, path), kind
        for hour in (9, 10, 20, 15):
            assert lookup(spark, p, batch(spark, hour), files) == lookup(spark, p, batch(spark, hour), None), (kind, hour)
    assert files.version == table_version(spark, path) and files.unreadable is None
    assert lookup(spark, p, batch(spark, 10), files) == [("a1", "h-a1"), ("a2", "h-a2"), ("b2", "h-b2")]  # 09:00-12:00
    known = files.at(spark, files.version)
    assert all(f.low is not None and f.high is not None for f in known), "event-time statistics are read"


def test_only_the_files_near_the_batch_hours_are_read(spark, clickstream):
    p = clickstream
    path = p.layout.silver.path
    for hour in (1, 9, 20):
        append(spark, p, hour, [f"e{hour}"])
    files = TableFiles(path, "event_time")
    read = []
    original = files.read
    files.read = lambda spark, chosen, columns: read.append(len(chosen)) or original(spark, chosen, columns)
    assert lookup(spark, p, batch(spark, 9), files) == [("e9", "h-e9")]
    assert read == [1], "one file of three: hour 9's"


def test_a_table_with_deletion_vectors_is_read_through_delta(spark, clickstream):
    p = clickstream
    path = p.layout.silver.path
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')")
    append(spark, p, 9, ["a1", "a2", "a3"])
    files = TableFiles(path, "event_time")
    assert lookup(spark, p, batch(spark, 9), files) == [("a1", "h-a1"), ("a2", "h-a2"), ("a3", "h-a3")]
    spark.sql(f"DELETE FROM delta.`{path}` WHERE event_id = 'a2'")  # marks the row deleted in a deletion vector
    assert lookup(spark, p, batch(spark, 9), files) == [("a1", "h-a1"), ("a3", "h-a3")]
    assert files.at(spark, table_version(spark, path)) is None and "deletion vector" in files.unreadable


def test_a_commit_file_cleaned_up_makes_the_files_listed_again(spark, clickstream):
    p = clickstream
    path = p.layout.silver.path
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('delta.checkpointInterval' = '1')")  # Delta reads on
    append(spark, p, 9, ["a1"])
    files = TableFiles(path, "event_time")
    assert lookup(spark, p, batch(spark, 9), files) == [("a1", "h-a1")]
    append(spark, p, 9, ["a2"], at_minute=5)
    append(spark, p, 9, ["a3"], at_minute=10)
    gone = f"{path}/_delta_log/{files.version + 1:020d}.json"
    os.remove(gone)
    assert lookup(spark, p, batch(spark, 9), files) == [("a1", "h-a1"), ("a2", "h-a2"), ("a3", "h-a3")]
    assert files.version == table_version(spark, path) and files.unreadable is None
    assert spark.read.format("delta").load(path).where(F.col("event_id") == "a2").count() == 1


def test_a_large_table_is_read_through_delta_at_a_query_s_first_batch_then_listed(spark, clickstream):
    """Delta's checksum file lists a small table's files; a larger one's list costs Spark jobs, which a `--once` run
    (one batch) would pay on top of its read."""
    p = clickstream
    path = p.layout.silver.path
    for hour in (8, 9):
        append(spark, p, hour, [f"e{hour}"])
    key = "spark.databricks.delta.allFilesInCrc.thresholdNumFiles"
    before = spark.conf.get(key, None)
    spark.conf.set(key, "1")  # the checksum of the next commit lists no file: a "large" table
    try:
        append(spark, p, 9, ["a9"], at_minute=5)
        files = TableFiles(path, "event_time")
        version = table_version(spark, path)
        assert files.at(spark, version) is None and files.version is None, "the first batch: through Delta"
        assert files.at(spark, version) is not None and files.version == version, "then listed from Delta's state"
        assert listed(files, spark, path) == delta_files(spark, path)
        assert lookup(spark, p, batch(spark, 9), files) == lookup(spark, p, batch(spark, 9), None)
    finally:
        spark.conf.unset(key) if before is None else spark.conf.set(key, before)
