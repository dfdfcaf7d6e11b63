"""A silver micro-batch's classification stays what it was when its own rows reach silver (real Delta tables).

The batch is classified once and kept in memory for all its writes. Spark re-caches every cached plan that reads a
table when a write to that table commits; had the dedup lookup read silver as "the table", the batch's silver append
would drop that copy, and whatever used the batch afterwards (its quarantine append, its deferred batch rules, its
SCD refresh) would classify it again against a silver holding it: every new row an exact re-send of itself.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import functions as F

from pipelines.engine.bronze import BRONZE_SCHEMA
from pipelines.engine.dedup import DEDUP_HASH_PROPERTY, LookupSizes, existing_rows
from pipelines.engine.delta_io import TableSnapshot, table_snapshot, table_version
from pipelines.engine.delta_log import latest_version
from pipelines.engine.silver import OUTCOME, classify_validated, silver_schema, to_silver_rows, validate
from pipelines.engine.table_files import TableFiles
from tests.support import clickstream_tables

pytestmark = [pytest.mark.slow]

AT = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def record(offset: int, event_id: str, page: str = "/") -> tuple:
    event = {"event_id": event_id, "event_type": "page_view", "event_time": "2026-11-22T09:00:00.000Z",
             "user_id": "u1", "session_id": "s1", "page_url": page}  # fmt: skip
    return (b"u1", json.dumps(event).encode(), "t", 0, offset, AT, 0, [], AT, AT.date())


@pytest.fixture
def clickstream(spark, tmp_path):
    """The clickstream pipeline with its tables created (empty) in a lake of the test's own."""
    return clickstream_tables(spark, tmp_path)


@pytest.mark.parametrize("as_parquet", [False, True], ids=["through-delta", "listed-files"])
def test_a_batch_keeps_its_outcomes_after_its_silver_append(spark, clickstream, as_parquet):
    """Through Delta (by version) or as the files a silver query lists (`TableFiles`, a real file read here)."""
    p = clickstream
    path = p.layout.silver.path
    earlier = {"event_id": "e0", "event_time": AT, "event_date": AT.date(), "payload_hash": "0" * 64}
    spark.createDataFrame([earlier], silver_schema(p.contract)).write.format("delta").mode("append").save(path)
    rows = [record(0, "e1"), record(1, "e2"), record(2, "e3"), record(3, "e1", page="/other"), record(4, "e2")]
    raw = spark.createDataFrame([*rows, (b"u1", b"not json", "t", 0, 5, AT, 0, [], AT, AT.date())], BRONZE_SCHEMA)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
    keys = p.spec.dedup_keys
    files = TableFiles(path, p.spec.event_time) if as_parquet else None
    existing = existing_rows(spark, path, raw, p.contract.field(p.spec.event_time), keys, 3600, files=files).rows
    assert [r.event_id for r in existing.collect()] == ["e0"]
    classified = classify_validated(validate(raw, p.contract, p.suite), existing, keys)
    classified = classified.persist(StorageLevel.MEMORY_AND_DISK)

    def outcomes() -> dict[str, int]:
        return {r[OUTCOME]: r["n"] for r in classified.groupBy(OUTCOME).agg(F.count("*").alias("n")).collect()}

    before = outcomes()
    assert before == {"silver": 3, "exact_duplicate": 1, "quarantine": 2}
    to_silver_rows(classified, p.contract, p.spec).write.format("delta").mode("append").save(path)
    try:
        assert spark.read.format("delta").load(path).count() == 1 + 3
        assert outcomes() == before  # not classified again against the silver that now holds e1, e2 and e3
        assert to_silver_rows(classified, p.contract, p.spec).count() == 3
    finally:
        classified.unpersist()
        raw.unpersist()


def test_the_version_and_size_a_batch_reads_silver_at_are_found_without_a_spark_job(spark, clickstream):
    """A Spark job of its own on every silver micro-batch would queue behind the other queries' tasks."""
    p = clickstream
    path = p.layout.silver.path
    sc = spark.sparkContext

    def snapshot_alone() -> TableSnapshot:  # the jobs it ran, if any, are those of its group
        sc.setJobGroup("table-snapshot", "the version lookup")
        try:
            return table_snapshot(spark, path, [DEDUP_HASH_PROPERTY, "no.such.property"])
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)

    hashed = {DEDUP_HASH_PROPERTY: "event_id"}  # the properties asked for that the table has
    assert snapshot_alone() == (latest_version(path), 0, hashed) == (0, 0, hashed)
    for n in (1, 3):
        rows = [{"event_id": f"e{i}", "event_time": AT, "event_date": AT.date()} for i in range(n)]
        spark.createDataFrame(rows, silver_schema(p.contract)).write.format("delta").mode("append").save(path)
    size = DeltaTable.forPath(spark, path).detail().first()["sizeInBytes"]
    assert snapshot_alone() == (latest_version(path), size, hashed) == (2, size, hashed) and size > 0
    assert list(sc.statusTracker().getJobIdsForGroup("table-snapshot")) == []
    assert table_version(spark, path) == 2


@pytest.mark.parametrize("stats", [True, False], ids=["statistics", "no-statistics"])
@pytest.mark.parametrize("as_parquet", [False, True], ids=["through-delta", "listed-files"])
def test_a_lookup_is_large_by_the_rows_of_the_files_it_reads(spark, clickstream, monkeypatch, as_parquet, stats):
    """Whether a silver query's lookup broadcasts the batch's keys: by the row counts in the statistics of the files
    whose event times overlap the window (Delta's planning, or the listed files'; no Spark job): every row of such a
    file counts. Files written without statistics have the window's rows counted instead. A file outside the window
    does not count. Through Delta, or counted, a query asks once per window, then adds its batches' records."""
    p = clickstream
    path, event_time, keys = p.layout.silver.path, p.contract.field(p.spec.event_time), p.spec.dedup_keys
    files = {"in": [AT] * 2, "across": [AT + dt.timedelta(minutes=5)] * 2 + [AT + dt.timedelta(hours=3)],
             "later": [AT + dt.timedelta(days=2)] * 4}  # the window: 08:00-11:00 (the batch's hour, 1 hour horizon)

    def write(name: str, times: list[dt.datetime]) -> None:
        rows = [{"event_id": f"{name}-{i}", "event_time": t, "event_date": t.date(), "payload_hash": "0" * 64}
                for i, t in enumerate(times)]  # fmt: skip
        spark.createDataFrame(rows, silver_schema(p.contract)).coalesce(1).write.format("delta").mode("append").save(path)

    spark.conf.set("spark.databricks.delta.stats.collect", str(stats).lower())
    try:
        for name, times in files.items():
            write(name, times)
    finally:
        spark.conf.unset("spark.databricks.delta.stats.collect")
    raw = spark.createDataFrame([record(0, "e1"), record(1, "e2")], BRONZE_SCHEMA)

    def large(minimum: int, sizes: LookupSizes | None = None) -> bool:
        monkeypatch.setattr("pipelines.engine.dedup.BROADCAST_LOOKUP_MIN", minimum)
        files = TableFiles(path, p.spec.event_time) if as_parquet else None
        sizes = LookupSizes() if sizes is None else sizes
        return existing_rows(spark, path, raw, event_time, keys, 3600, sizes, files).broadcast_keys  # (no keys to find)

    size = 2 + 3 if stats else 2 + 2  # by statistics, all of "across"; counted, its rows in the window
    assert large(size) and not large(size + 1)
    query = LookupSizes()  # one query's, over two batches
    assert not large(size + 3, query)
    write("more", [AT] * 10)  # by another writer
    asked = not as_parquet or not stats  # listed files with statistics are read again; the others were asked once
    assert large(size + 3, query) == (not asked), "asked: its size plus the 2 records of its first batch, not 'more'"
    assert large(size + 4, query), "asked: the 2 records of each of its two batches added"
    monkeypatch.setattr("pipelines.engine.dedup.BROADCAST_LOOKUP_MIN", 0)
    assert not existing_rows(spark, path, raw, event_time, keys, 3600).broadcast_keys, "only a silver query's may be"
