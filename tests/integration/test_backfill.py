"""Backfills (`lakepipe backfill`) on the real broker and real Delta tables.

- Bronze: a Kafka range by offsets, then by timestamps, into a bronze table that already holds part of it: every
  record of the topic once (compared with what a plain consumer reads); again: nothing written; with records
  deleted from the topic (Kafka's DeleteRecords, what retention does), the gap is reported with its size and
  nothing is written unless --allow-gaps.
- Gold and silver (test_backfill_gold.py, test_backfill_silver.py): a range of a windowed output broken by hand (a wrong function) is recomputed from silver and replaced in
  one commit, equal to an independent computation, including late events the stream left out; the same
  backfill again is skipped; a dry run writes nothing; an output that keeps streaming state says it cannot.
  Beside a running stream, only windows the stream has closed are replaced, and the table ends equal to the
  independent computation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from pipelines.backfill.bronze import GapError
from pipelines.backfill.command import run_backfill
from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.project import load_project
from tests.support import pipeline, run_once, send, table

pytestmark = pytest.mark.kafka

START = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def backfill(spark, settings, **kw):
    args = argparse.Namespace(pipeline="clickstream", layer="gold", table=None, start=None, end=None, offsets=None,
                              dry_run=False, allow_gaps=False, force=False)  # fmt: skip
    for k, v in kw.items():
        setattr(args, k, v)
    return run_backfill(spark, load_project(settings, ["clickstream"]), args)


def kafka_positions(settings, topic: str) -> set[tuple[int, int, bytes]]:
    """(partition, offset, value) of every record the topic still holds, read by a plain consumer."""
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False})  # fmt: skip
    out = set()
    try:
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                consumer.assign([TopicPartition(topic, p, low)])
                while len([x for x in out if x[0] == p]) < high - low:
                    for m in consumer.consume(500, timeout=5):
                        out.add((m.partition(), m.offset(), m.value()))
    finally:
        consumer.close()
    return out


def bronze_positions(spark, settings) -> list[tuple[int, int, bytes]]:
    rows = table(spark, pipeline(settings, "clickstream"), "clickstream_events_raw").select("partition", "offset", "value")
    return [(r.partition, r.offset, bytes(r.value)) for r in rows.collect()]


def test_bronze_from_offsets_then_timestamps_holds_every_record_once(spark, test_settings):
    gen = ClickstreamGenerator(seed=3, start=START, events_per_second=5)
    send(test_settings, [gen.next_event() for _ in range(400)])
    topic = pipeline(test_settings, "clickstream").topic

    first = backfill(spark, test_settings, layer="bronze", offsets="0:0-50,1:10-60")
    assert (first.status, first.rows_written) == ("succeeded", 100)
    everything = backfill(spark, test_settings, layer="bronze", start="2000-01-01", end="2100-01-01")
    assert (everything.rows_read, everything.rows_written) == (400, 300), "records already in bronze are not written again"
    positions = bronze_positions(spark, test_settings)
    assert len(positions) == len(set(positions)) == 400
    assert set(positions) == kafka_positions(test_settings, topic)
    again = backfill(spark, test_settings, layer="bronze", start="2000-01-01", end="2100-01-01")
    assert again.rows_written == 0 and len(bronze_positions(spark, test_settings)) == 400
    dry = backfill(spark, test_settings, layer="bronze", offsets="0:0-10", dry_run=True)
    assert dry.status == "dry run" and dry.rows_read == 10
    audit = spark.read.format("delta").load(load_project(test_settings, ["clickstream"]).backfills_table.path)
    assert audit.where("status = 'succeeded' AND layer = 'bronze'").count() == 3


@pytest.mark.scenario  # a SIGKILL scenario (its own JVM, minutes on a loaded machine): make test-scenarios
def test_a_bronze_backfill_killed_half_way_and_run_again_writes_each_record_once(spark, test_settings):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.conftest import PROJECT_DIR
    from tests.integration.test_exactly_once import commits

    gen = ClickstreamGenerator(seed=5, start=START, events_per_second=5)
    send(test_settings, [gen.next_event() for _ in range(1000)])
    bronze = Path(pipeline(test_settings, "clickstream").layout.bronze.path)
    conf = test_settings.source.parent
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(conf), "--env", "test", "backfill", "clickstream",
           "--layer", "bronze", "--from", "2000-01-01", "--to", "2100-01-01", "--chunk-records", "50"]  # fmt: skip
    with open(conf / "backfill.log", "ab") as out:
        proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 600  # a fresh JVM on a loaded machine: minutes before its first piece
    while commits(bronze) < 3 and time.monotonic() < deadline and proc.poll() is None:  # creation, then 2 pieces
        time.sleep(0.1)
    assert proc.poll() is None, "the backfill ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    part = len(bronze_positions(spark, test_settings))
    assert 0 < part < 1000, f"killed half-way: {part} of 1000 records were in bronze"

    rest = backfill(spark, test_settings, layer="bronze", start="2000-01-01", end="2100-01-01")
    positions = bronze_positions(spark, test_settings)
    assert rest.rows_written == 1000 - part and len(positions) == len(set(positions)) == 1000


def test_records_gone_from_the_topic_are_a_reported_gap(spark, test_settings):
    gen = ClickstreamGenerator(seed=4, start=START, events_per_second=5)
    send(test_settings, [gen.next_event() for _ in range(200)])
    topic = pipeline(test_settings, "clickstream").topic
    admin = AdminClient({"bootstrap.servers": test_settings.kafka.bootstrap_servers})
    for f in admin.delete_records([TopicPartition(topic, 0, 30)]).values():  # what retention does
        f.result(30)
    kept = kafka_positions(test_settings, topic)
    assert len(kept) == 170

    with pytest.raises(GapError, match=r"partition 0 offsets 0-30 \(30 records\) expired from the topic.*--allow-gaps"):
        backfill(spark, test_settings, layer="bronze", start="2000-01-01", end="2100-01-01")
    assert bronze_positions(spark, test_settings) == [], "nothing written without --allow-gaps"
    loaded = backfill(spark, test_settings, layer="bronze", start="2000-01-01", end="2100-01-01", allow_gaps=True)
    assert loaded.rows_written == 170 and "30 records" in loaded.detail
    assert set(bronze_positions(spark, test_settings)) == kept


def beside_the_stream(spark, settings, events: list, backfills) -> None:
    """Run the pipeline continuously, send `events` in pieces meanwhile, run `backfills()` once the stream has
    taken its first records; then stop, and drain what is left with a --once run."""
    import threading

    from pipelines.engine import runner

    project = load_project(settings, ["clickstream"])
    queries = runner.start_all(spark, project, ["clickstream"], {"processingTime": "1 second"})
    silver = next(q for q in queries if q.name == "clickstream.silver")
    producer = threading.Thread(target=lambda: [send(settings, events[i : i + 100]) for i in range(0, len(events), 100)])
    try:
        while not any(p.numInputRows for p in silver.recentProgress):
            silver.awaitTermination(0.5)
        producer.start()
        backfills()
        producer.join()
        for q in queries:
            runner.raise_if_failed(q, queries)
    finally:
        for q in queries:
            q.stop()
    run_once(spark, settings, ["clickstream"])


def killed_then_finished(spark, settings, args: list[str], table_dir, **again) -> None:
    """`lakepipe backfill ARGS` SIGKILLed as soon as it has committed to `table_dir` (or after 60 s), then run
    again in this session."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import PROJECT_DIR
    from tests.integration.test_exactly_once import commits

    conf = settings.source.parent
    before = commits(table_dir)
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(conf), "--env", "test", "backfill", "clickstream", *args]
    with open(conf / "backfill.log", "ab") as out:
        proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while commits(table_dir) == before and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the backfill ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = backfill(spark, settings, **again)
    assert done.status == "succeeded", done.summary()


def test_a_bronze_backfill_beside_the_running_stream_loads_only_what_the_stream_never_reads(spark, tmp_path, unique_topic, kafka):
    import threading

    from pipelines.engine import runner
    from pipelines.model.config import load_settings
    from tests.support import without_gold

    conf = without_gold(tmp_path, unique_topic).source.parent  # bronze is under test: no gold queries beside it
    (conf / "test.yaml").write_text((conf / "test.yaml").read_text().replace("kafka:\n", "kafka:\n  starting_offsets: latest\n", 1))
    settings = load_settings("test", conf)
    from pipelines.platform import kafka_admin

    kafka_admin.ensure_topic(settings.kafka, unique_topic)
    gen = ClickstreamGenerator(seed=51, start=START, events_per_second=5)
    events = [gen.next_event() for _ in range(1200)]
    send(settings, events[:300])  # before the stream: only a backfill can load these
    project = load_project(settings, ["clickstream"])
    queries = runner.start_all(spark, project, ["clickstream"], {"processingTime": "1 second"})
    bronze = next(q for q in queries if q.name == "clickstream.silver")  # the one query writing bronze and silver
    try:
        while not bronze.recentProgress:
            bronze.awaitTermination(0.5)
        producer = threading.Thread(target=lambda: [send(settings, events[i : i + 100]) for i in range(300, 1200, 100)])
        producer.start()
        done = backfill(spark, settings, layer="bronze", start="2000-01-01", end="2100-01-01")
        producer.join()
        assert done.rows_written == 300, done.summary()
    finally:
        for q in queries:
            q.stop()
    run_once(spark, settings, ["clickstream"])
    positions = bronze_positions(spark, settings)
    assert len(positions) == len(set(positions)) == 1200
    assert set(positions) == kafka_positions(settings, unique_topic)
