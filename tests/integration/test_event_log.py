"""The event log on real streams: every micro-batch of every query, and each start and stop, one row each,
written in one Delta commit per flush (none per micro-batch); rows past the retention deleted at the next start."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from delta.tables import DeltaTable

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import load_settings
from pipelines.model.layout import events_table
from tests.conftest import write_conf
from tests.support import pipeline, run_once, send

pytestmark = [pytest.mark.kafka]


def test_every_batch_start_and_stop_once_in_few_commits(spark, tmp_path, unique_topic, kafka):
    # flushes only when a run ends (the interval is longer than a run, however loaded the machine)
    test_settings = load_settings("test", write_conf(tmp_path / "conf", unique_topic, extra="event_log: {flush_interval: 1 hour}\n"))
    gen = ClickstreamGenerator(seed=8, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    p = pipeline(test_settings, "clickstream")
    queries = {"clickstream.silver", *[f"clickstream.{o.layer}.{o.name}" for o in p.spec.outputs]}  # bronze: with silver
    table = events_table(test_settings)
    seen: set[str] = set()
    for sent in (200, 150):
        if sent == 150:  # a row past the retention (30 days): the next run's start deletes it
            old = dt.datetime(2026, 1, 1)
            spark.createDataFrame([(old, "batch", "old", old.date())], "event_time timestamp, event string, run_id string, "
                                  "event_date date").write.format("delta").mode("append").save(table.path)  # fmt: skip
        send(test_settings, itertools.islice(events, sent))
        result = run_once(spark, test_settings, ["clickstream"])
        log = spark.read.format("delta").load(table.path)
        rows = [r for r in log.collect() if r.run_id not in seen]  # this run's
        seen |= {r.run_id for r in rows}
        for q in queries:
            mine = [r for r in rows if r.query_name == q]
            assert sorted({r.event for r in mine}) == ["batch", "started", "stopped"], q
            assert [r.event for r in mine].count("started") == 1 and [r.event for r in mine].count("stopped") == 1
            batches = [r for r in mine if r.event == "batch"]
            assert len(batches) == result.queries[q].batches, q  # the listener saw what the run's progress shows
            assert sum(r.input_rows for r in batches) == result.queries[q].input_rows, q
            layer = q.split(".")[1]
            assert all(r.pipeline == "clickstream" and r.layer == layer and r.error is None for r in mine), q
    assert log.where("run_id = 'old'").count() == 0, "rows past the retention are deleted"
    bronze = log.where("query_name = 'clickstream.silver' AND event = 'batch'").collect()  # reads Kafka, writes bronze
    assert sum(r.input_rows for r in bronze) == 350, "each bronze micro-batch once, with its rows"
    newest = max(bronze, key=lambda r: r.event_time)
    assert newest.lag_records == 0 and p.topic in newest.end_offsets and newest.durations_ms["triggerExecution"] > 0
    total = log.where("event = 'batch'").count()
    writes = [h for h in DeltaTable.forPath(spark, table.path).history().collect() if h.operation == "WRITE"]
    # a commit per flush (the end of each run) and the test's own row, not one per micro-batch
    assert len(writes) == 3 < total, (len(writes), total)
