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
from pyspark import StorageLevel
from pyspark.sql import functions as F

from pipelines.engine.bronze import BRONZE_SCHEMA
from pipelines.engine.dedup import existing_rows
from pipelines.engine.delta_io import table_version
from pipelines.engine.delta_log import latest_version
from pipelines.engine.silver import OUTCOME, classify_validated, silver_schema, to_silver_rows, validate
from pipelines.engine.tables import create_tables
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from tests.conftest import write_conf
from tests.support import pipeline

pytestmark = [pytest.mark.slow]

AT = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def record(offset: int, event_id: str, page: str = "/") -> tuple:
    event = {"event_id": event_id, "event_type": "page_view", "event_time": "2026-11-22T09:00:00.000Z",
             "user_id": "u1", "session_id": "s1", "page_url": page}  # fmt: skip
    return (b"u1", json.dumps(event).encode(), "t", 0, offset, AT, 0, [], AT, AT.date())


@pytest.fixture
def clickstream(spark, tmp_path):
    """The clickstream pipeline with its tables created (empty) in a lake of the test's own."""
    settings = load_settings("test", write_conf(tmp_path / "conf", "unused"))
    p = pipeline(settings, "clickstream")
    create_tables(spark, load_project(settings, ["clickstream"]), p)
    return p


def test_a_batch_keeps_its_outcomes_after_its_silver_append(spark, clickstream):
    p = clickstream
    rows = [record(0, "e1"), record(1, "e2"), record(2, "e3"), record(3, "e1", page="/other"), record(4, "e2")]
    raw = spark.createDataFrame([*rows, (b"u1", b"not json", "t", 0, 5, AT, 0, [], AT, AT.date())], BRONZE_SCHEMA)
    raw = raw.persist(StorageLevel.MEMORY_AND_DISK)
    keys = p.spec.dedup_keys
    existing = existing_rows(spark, p.layout.silver.path, raw, p.contract.field(p.spec.event_time), keys, 3600).rows
    classified = classify_validated(validate(raw, p.contract, p.suite), existing, keys)
    classified = classified.persist(StorageLevel.MEMORY_AND_DISK)

    def outcomes() -> dict[str, int]:
        return {r[OUTCOME]: r["n"] for r in classified.groupBy(OUTCOME).agg(F.count("*").alias("n")).collect()}

    before = outcomes()
    assert before == {"silver": 3, "exact_duplicate": 1, "quarantine": 2}
    to_silver_rows(classified, p.contract, p.spec).write.format("delta").mode("append").save(p.layout.silver.path)
    try:
        assert spark.read.format("delta").load(p.layout.silver.path).count() == 3
        assert outcomes() == before  # not classified again against the silver that now holds e1, e2 and e3
        assert to_silver_rows(classified, p.contract, p.spec).count() == 3
    finally:
        classified.unpersist()
        raw.unpersist()


def test_the_version_a_batch_reads_silver_at_is_found_without_a_spark_job(spark, clickstream):
    """A Spark job of its own on every silver micro-batch would queue behind the other queries' tasks."""
    p = clickstream
    path = p.layout.silver.path
    sc = spark.sparkContext

    def version_alone() -> int:  # the jobs it ran, if any, are those of its group
        sc.setJobGroup("table-version", "the version lookup")
        try:
            return table_version(spark, path)
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)

    assert version_alone() == latest_version(path) == 0
    row = {"event_id": "e1", "event_time": AT, "event_date": AT.date()}
    spark.createDataFrame([row], silver_schema(p.contract)).write.format("delta").mode("append").save(path)
    assert version_alone() == latest_version(path) == 1
    assert list(sc.statusTracker().getJobIdsForGroup("table-version")) == []
