"""Exactly-once across crashes: SIGKILL the running pipeline at different moments, restart, drain.

While a producer sends a known mix, `lakepipe run clickstream` (continuous, a separate process) is killed
with SIGKILL three times: right after a bronze commit, right after a silver commit, and right after a gold
commit, i.e. in the middle of the following stage's work. After a final `--once` drain, bronze holds every
Kafka offset exactly once, silver every event once, quarantine every reject once, the audit balances, and
gold equals a batch recomputation over silver, and quality_results holds one row per rule per silver batch. A last continuous run stops cleanly on SIGINT (Ctrl-C).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipelines.domains.clickstream.gold import activity_per_minute, revenue_per_minute
from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.model.config import load_settings
from pipelines.ops.run_marker import run_state
from pipelines.platform import kafka_admin
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf
from tests.support import pipeline, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 4000


def commits(table_dir: Path) -> int:
    log = table_dir / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def start_pipeline(conf: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(conf), "--env", "test", "run", "clickstream"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_for_new_commit(table_dir: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    before = commits(table_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if commits(table_dir) > before:
            return
        time.sleep(0.1)
    assert proc.poll() is None, f"the pipeline exited early with {proc.returncode}"


def test_sigkill_at_three_moments_loses_and_duplicates_nothing(spark, tmp_path, unique_topic, kafka):
    conf = write_conf(tmp_path / "conf", unique_topic)
    settings = load_settings("test", conf)
    tables = Path(settings.tables_root)
    faults = FaultRates(exact_duplicate=0.03, conflicting_duplicate=0.02, malformed=0.05, out_of_order=0.05)
    gen = ClickstreamGenerator(seed=21, start=dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC), faults=faults)
    kafka_admin.ensure_topic(settings.kafka, unique_topic)
    tally = Tally()
    producer = threading.Thread(
        target=publish,
        args=(gen.events(), KafkaSink(settings.kafka, unique_topic, tally)),
        kwargs={"count": EVENTS, "rate": 60},
        daemon=True,
    )
    producer.start()

    log = tmp_path / "pipeline.log"
    kill_after = [tables / "bronze/clickstream_events_raw", tables / "silver/clickstream_events",
                  tables / "gold/clickstream_revenue_per_minute"]  # fmt: skip
    for table_dir in kill_after:
        proc = start_pipeline(conf, log)
        try:
            wait_for_new_commit(table_dir, proc)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    producer.join(timeout=180)
    assert not producer.is_alive() and sum(tally.delivered.values()) == EVENTS, tally.to_dict()

    killed = run_state(f"{settings.checkpoints_root}/clickstream")  # `lakepipe status` tells a killed run apart
    assert not killed.running and killed.since_ms is not None and "killed?" in killed.phrase(0)
    run_once(spark, settings, ["clickstream"])
    p = pipeline(settings, "clickstream")
    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    expected = tally.expected()

    bronze = read(p.layout.bronze)
    offsets = kafka_admin.end_offsets(settings.kafka, unique_topic)
    assert sum(offsets.values()) == EVENTS
    assert bronze.count() == EVENTS, "bronze has one row per Kafka record, no more, no less"
    assert bronze.select("topic", "partition", "offset").distinct().count() == EVENTS
    per_partition = {r.partition: (r.lo, r.hi, r.n) for r in bronze.groupBy("partition").agg(
        F.min("offset").alias("lo"), F.max("offset").alias("hi"), F.count("*").alias("n")).collect()}  # fmt: skip
    assert per_partition == {pt: (0, end - 1, end) for pt, end in offsets.items() if end}, "offsets have no gaps"

    silver = read(p.layout.silver)
    assert silver.count() == expected["silver"]
    assert silver.select("event_id").distinct().count() == expected["silver"], "event_id is unique in silver"
    quarantine = read(p.layout.quarantine)
    assert quarantine.count() == expected["quarantine"]
    assert quarantine.select("partition", "offset").distinct().count() == expected["quarantine"]
    audit = read(p.layout.batches).groupBy().sum("bronze_records", "exact_duplicates").first()
    assert tuple(audit) == (EVENTS, expected["exact_duplicates"]), "each batch is accounted for exactly once"
    silver_batches = {(r.query_id.removeprefix("silver-"), r.batch_id) for r in read(p.layout.batches).collect()}
    quality = read(p.layout.quality)
    assert quality.count() == len(silver_batches) * len(p.suite.rules), "one quality row per rule per batch, across kills"
    assert {(r.query_id, r.batch_id) for r in quality.select("query_id", "batch_id").distinct().collect()} == silver_batches

    gold = {t.name: read(t) for t in p.layout.outputs}
    assert_df_equality(gold["clickstream_revenue_per_minute"], revenue_per_minute(silver), ignore_row_order=True,
                       ignore_nullable=True)  # fmt: skip
    assert_df_equality(gold["clickstream_activity_per_minute"], activity_per_minute(silver), ignore_row_order=True,
                       ignore_nullable=True)  # fmt: skip
    batch_sessions = silver.groupBy("session_id", F.session_window("event_time", "30 minutes")).agg(
        F.min_by("user_id", "event_time").alias("user_id"),
        F.min("event_time").alias("session_start"),
        F.max("event_time").alias("session_end"),
        F.count("*").alias("events"),
        F.sum(F.when(F.col("event_type") == "page_view", 1).otherwise(0)).cast("long").alias("page_views"),
        F.sum(F.when(F.col("event_type") == "purchase", 1).otherwise(0)).cast("long").alias("purchases"),
        F.coalesce(F.sum(F.when(F.col("event_type") == "purchase", F.col("price") * F.col("quantity"))),
                   F.lit(0)).cast("decimal(38,4)").alias("revenue"),
    ).withColumn("converted", F.col("purchases") > 0).drop("session_window")  # fmt: skip
    assert_df_equality(gold["clickstream_sessions"], batch_sessions.select(*gold["clickstream_sessions"].columns),
                       ignore_row_order=True, ignore_nullable=True)  # fmt: skip

    # Ctrl-C: a continuous run stops cleanly (exit 0) and prints its per-query summary.
    publish(gen.events(), KafkaSink(settings.kafka, unique_topic, Tally()), count=50)
    ctrl_c_log = tmp_path / "ctrl-c.log"
    proc = start_pipeline(conf, ctrl_c_log)
    try:
        wait_for_new_commit(tables / "silver/clickstream_events", proc)
        running = run_state(p.layout.checkpoints)
        assert running.running and running.pid == proc.pid, running
        # a continuous run names Spark's UI once; its Prometheus servlet has each query's streaming metrics
        ui = next(ln for ln in ctrl_c_log.read_text().splitlines() if ln.startswith("Spark UI: ")).split()[2]
        metrics = urllib.request.urlopen(f"{ui}/metrics/prometheus/", timeout=30).read().decode()
        assert "metrics_lakepipe_driver_spark_streaming_clickstream_silver_processingRate_total_Value" in metrics, metrics[:2000]
        assert urllib.request.urlopen(f"{ui}/StreamingQuery/", timeout=30).status == 200
        os.kill(proc.pid, signal.SIGINT)  # the Python process only, as a terminal's Ctrl-C would reach it
        assert proc.wait(120) == 0, ctrl_c_log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert run_state(p.layout.checkpoints).since_ms is None, "a run stopped with Ctrl-C leaves no marker"
    output = ctrl_c_log.read_text()
    assert "clickstream.bronze: 50 rows" in output, output[-3000:]
