"""Backfills (`lakepipe backfill`) on the real broker and real Delta tables.

- Bronze: a Kafka range by offsets, then by timestamps, into a bronze table that already holds part of it: every
  record of the topic once (compared with what a plain consumer reads); again: nothing written; with records
  deleted from the topic (Kafka's DeleteRecords, what retention does), the gap is reported with its size and
  nothing is written unless --allow-gaps.
- Gold: a range of a windowed output broken by hand (a wrong function) is recomputed from silver and replaced in
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
from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.errors import LakepipeError
from pipelines.model.project import load_project
from tests.integration.test_clickstream_once import expected_revenue, gold_revenue
from tests.support import pipeline, reaching_silver, run_once, send, table

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
    deadline = time.monotonic() + 240
    while commits(bronze) < 5 and time.monotonic() < deadline and proc.poll() is None:  # creation, then 4 pieces
        time.sleep(0.1)
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


def test_a_wrong_gold_range_is_recomputed_from_silver(spark, test_settings):
    gen = ClickstreamGenerator(seed=11, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.04))
    wave1 = [gen.next_event() for _ in range(1200)]
    send(test_settings, wave1)
    late = ClickstreamGenerator(seed=12, start=gen.clock, events_per_second=1, faults=FaultRates(late=0.3))
    wave2 = [late.next_event() for _ in range(600)]
    run_once(spark, test_settings, ["clickstream"])
    send(test_settings, wave2)
    run_once(spark, test_settings, ["clickstream"])  # late events reach silver, not gold
    p = pipeline(test_settings, "clickstream")
    path = p.layout.output("clickstream_revenue_per_minute").path
    payloads = reaching_silver(wave1 + wave2)
    full = expected_revenue(payloads)
    assert gold_revenue(spark, p) != full, "the stream left late events out of gold"

    start, end = dt.datetime(2026, 11, 22, 8, 0), dt.datetime(2026, 11, 22, 9, 3)  # final: the stream is at ~09:04
    spark.sql(f"UPDATE delta.`{path}` SET revenue = 0 WHERE window_start >= '2026-11-22 09:01:00' AND window_start < '2026-11-22 09:02:00'")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE window_start = '2026-11-22 09:02:00' AND category = 'books'")
    before = gold_revenue(spark, p)

    dry = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat(), dry_run=True)
    assert dry.status == "dry run" and gold_revenue(spark, p) == before
    done = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
    assert done.status == "succeeded" and done.rows_replaced > 0
    after = gold_revenue(spark, p)
    in_range = lambda rows: {k: v for k, v in rows.items() if start <= k[0] < end}  # noqa: E731
    assert in_range(after) == in_range(full), "the range equals a recomputation from all of silver (late events too)"
    assert in_range(before) != in_range(full) and any(k[0] < dt.datetime(2026, 11, 22, 9) for k in in_range(after))
    assert {k: v for k, v in after.items() if k not in in_range(after)} == {k: v for k, v in before.items() if not start <= k[0] < end}

    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().version
    again = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
    assert again.status == "skipped" and spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().version == version

    with pytest.raises(LakepipeError, match="keeps streaming state"):
        backfill(spark, test_settings, table="clickstream_sessions", start=start.isoformat(), end=end.isoformat())


def test_silver_re_derived_from_bronze_after_a_contract_fix(spark, test_settings, tmp_path):
    """`refund` events were quarantined (not in the contract's set); the contract is fixed to accept them and the
    range re-derived: they reach silver once each, leave quarantine, and the activity table counts them."""
    import json
    import shutil

    from pipelines.model.config import load_settings
    from tests.conftest import CONTRACTS, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    gen = ClickstreamGenerator(seed=21, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.04, malformed=0.1))
    events = [gen.next_event() for _ in range(1200)]
    send(test_settings, events)
    run_once(spark, test_settings, ["clickstream"])
    later = ClickstreamGenerator(seed=22, start=gen.clock, events_per_second=1)  # moves the watermark past wave 1
    events += [later.next_event() for _ in range(700)]
    send(test_settings, events[1200:])
    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    refunds = [json.loads(e.value) for e in events if e.reasons == ("not_in_set:event_type",)]
    assert refunds and table(spark, p, "clickstream_events").where("event_type = 'refund'").count() == 0

    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    contract = schemas / "clickstream" / "contract.yaml"
    contract.write_text(contract.read_text().replace("checkout, purchase]", "checkout, purchase, refund]", 1))
    topic = p.topic
    fixed = load_settings("test", write_conf(tmp_path / "conf", topic, schemas=schemas))
    assert fixed.lake_root == test_settings.lake_root

    done = backfill(spark, fixed, layer="silver", start="2000-01-01", end="2100-01-01")
    assert done.status == "succeeded" and "refreshed" in done.detail and "clickstream_sessions (keeps streaming state)" in done.detail
    p = pipeline(fixed, "clickstream")
    silver = table(spark, p, "clickstream_events")
    accepted = reaching_silver(events) + refunds
    assert silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert silver.where("event_type = 'refund'").count() == len(refunds)
    reasons = {r for row in table(spark, p, "clickstream_events_quarantine").collect() for r in row.reasons}
    assert "not_in_set:event_type" not in reasons and reasons
    assert gold_activity(spark, p) == expected_activity(accepted)
    assert gold_revenue(spark, p) == expected_revenue(accepted)
    run_once(spark, fixed, ["clickstream"])  # the streams carry on past the backfill's commits (and skip them)
    assert gold_activity(spark, p) == expected_activity(accepted) and silver.count() == len(accepted)


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


def test_a_gold_backfill_beside_the_running_stream(spark, test_settings):
    """The pipeline runs continuously while events arrive; two gold backfills run meanwhile. Once both are done
    (the stream drained by a last --once run), gold equals the independent computation, each key once."""
    gen = ClickstreamGenerator(seed=31, start=START, events_per_second=2)
    events = [gen.next_event() for _ in range(1500)]
    send(test_settings, events[:300])

    def backfills() -> None:
        for start, end in [(START, START.replace(minute=4)), (START.replace(minute=2), START.replace(minute=8))]:
            done = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
            assert done.status == "succeeded"

    beside_the_stream(spark, test_settings, events[300:], backfills)
    p = pipeline(test_settings, "clickstream")
    gold = table(spark, p, "clickstream_revenue_per_minute")
    assert gold.count() == gold.select("window_start", "category", "currency").distinct().count()
    assert gold_revenue(spark, p) == expected_revenue(reaching_silver(events))


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


def test_gold_and_silver_backfills_killed_half_way_then_run_again_are_exact(spark, test_settings, tmp_path):
    import json
    import shutil
    from pathlib import Path

    from pipelines.model.config import load_settings
    from tests.conftest import CONTRACTS, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    gen = ClickstreamGenerator(seed=41, start=START, events_per_second=5, faults=FaultRates(malformed=0.1))
    events = [gen.next_event() for _ in range(1000)]
    later = ClickstreamGenerator(seed=42, start=gen.clock + dt.timedelta(minutes=15), events_per_second=5)
    events += [later.next_event() for _ in range(100)]  # moves the watermark past the first 1,000
    send(test_settings, events)
    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    revenue = Path(p.layout.output("clickstream_revenue_per_minute").path)
    spark.sql(f"UPDATE delta.`{revenue}` SET revenue = 0")
    window = ["--table", "clickstream_revenue_per_minute", "--from", "2026-11-22T08:00", "--to", "2026-11-22T09:10"]
    killed_then_finished(spark, test_settings, ["--layer", "gold", *window], revenue,
                         table="clickstream_revenue_per_minute", start="2026-11-22T08:00", end="2026-11-22T09:10")  # fmt: skip
    accepted = reaching_silver(events)
    closed = lambda rows: {k: v for k, v in rows.items() if k[0] < dt.datetime(2026, 11, 22, 9, 10)}  # noqa: E731
    assert closed(gold_revenue(spark, p)) == closed(expected_revenue(accepted))

    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    contract = schemas / "clickstream" / "contract.yaml"
    contract.write_text(contract.read_text().replace("checkout, purchase]", "checkout, purchase, refund]", 1))
    fixed = load_settings("test", write_conf(tmp_path / "conf", p.topic, schemas=schemas))
    killed_then_finished(spark, fixed, ["--layer", "silver", "--from", "2000-01-01", "--to", "2100-01-01"],
                         Path(p.layout.silver.path), layer="silver", start="2000-01-01", end="2100-01-01")  # fmt: skip
    refunds = [json.loads(e.value) for e in events if e.reasons == ("not_in_set:event_type",)]
    accepted += refunds
    silver = table(spark, p, "clickstream_events")
    assert refunds and silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert closed(gold_activity(spark, p)) == closed(expected_activity(accepted))
    again = backfill(spark, fixed, layer="silver", start="2000-01-01", end="2100-01-01")
    assert again.status == "skipped" and table(spark, p, "clickstream_events").count() == len(accepted)


def test_a_bronze_backfill_beside_the_running_stream_loads_only_what_the_stream_never_reads(spark, tmp_path, unique_topic, kafka):
    import threading

    from pipelines.engine import runner
    from pipelines.model.config import load_settings
    from tests.conftest import write_conf

    conf = write_conf(tmp_path / "conf", unique_topic)
    (conf / "test.yaml").write_text((conf / "test.yaml").read_text().replace("kafka:\n", "kafka:\n  starting_offsets: latest\n", 1))
    settings = load_settings("test", conf)
    from pipelines.platform import kafka_admin

    kafka_admin.ensure_topic(settings.kafka, unique_topic)
    gen = ClickstreamGenerator(seed=51, start=START, events_per_second=5)
    events = [gen.next_event() for _ in range(1200)]
    send(settings, events[:300])  # before the stream: only a backfill can load these
    project = load_project(settings, ["clickstream"])
    queries = runner.start_all(spark, project, ["clickstream"], {"processingTime": "1 second"})
    bronze = next(q for q in queries if q.name == "clickstream.bronze")
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


def test_a_new_output_is_complete_from_its_first_run(spark, test_settings, tmp_path):
    """Situation 2: an output added to the spec later holds all of silver's history after its first run."""
    import shutil

    import yaml

    from pipelines.model.config import load_settings
    from tests.conftest import PROJECT_DIR, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_DIR / "conf" / "pipelines", specs)
    full = (specs / "clickstream.yaml").read_text()
    spec = yaml.safe_load(full)
    spec["outputs"] = [o for o in spec["outputs"] if o["name"] != "clickstream_activity_per_minute"]
    (specs / "clickstream.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    topic = pipeline(test_settings, "clickstream").topic
    before = load_settings("test", write_conf(tmp_path / "conf", topic, specs=specs))

    gen = ClickstreamGenerator(seed=61, start=START, events_per_second=5)
    events = [gen.next_event() for _ in range(800)]
    send(before, events[:500])
    run_once(spark, before, ["clickstream"])
    send(before, events[500:])
    run_once(spark, before, ["clickstream"])
    (specs / "clickstream.yaml").write_text(full)  # the output is added
    after = load_settings("test", write_conf(tmp_path / "conf", topic, specs=specs))
    run_once(spark, after, ["clickstream"])
    assert gold_activity(spark, pipeline(after, "clickstream")) == expected_activity(reaching_silver(events))


def test_a_silver_backfill_beside_the_running_stream_keeps_every_row_once(spark, test_settings):
    gen = ClickstreamGenerator(seed=71, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.03, malformed=0.05))
    events = [gen.next_event() for _ in range(1500)]
    send(test_settings, events[:500])

    def backfills() -> None:
        for _ in range(2):
            done = backfill(spark, test_settings, layer="silver", start="2000-01-01", end="2100-01-01", force=True)
            assert done.status == "succeeded", done.summary()

    beside_the_stream(spark, test_settings, events[500:], backfills)
    p = pipeline(test_settings, "clickstream")
    silver = table(spark, p, "clickstream_events")
    accepted = reaching_silver(events)
    assert silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert table(spark, p, "clickstream_events_quarantine").count() == sum(1 for e in events if e.reasons)
