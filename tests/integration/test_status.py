"""`lakepipe status` on the local broker and real Delta tables: bronze's lag is the broker's end offsets minus
where bronze's next micro-batch starts (the whole topic before the first run, then exactly the records sent while
the pipeline was stopped), and each table's last commit is seen; the spec's SLOs (lag, how long each layer's
oldest untaken source data has waited) decide the exit code."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyspark.sql import functions as F

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.engine.bronze import start_bronze
from pipelines.model.config import load_settings
from pipelines.ops.status import committed_offsets, pipeline_status
from pipelines.platform import kafka_admin
from tests.conftest import PROJECT_DIR, write_conf
from tests.integration.test_cli_errors import lakepipe
from tests.support import pipeline, run_once, send

pytestmark = [pytest.mark.kafka]


def test_lag_is_what_the_stopped_pipeline_has_not_taken(spark, test_settings, tmp_path):
    gen = ClickstreamGenerator(seed=5, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    send(test_settings, itertools.islice(events, 300))
    p = pipeline(test_settings, "clickstream")
    before = pipeline_status(test_settings, p)
    assert before.lag == 300  # starting_offsets: earliest, and no checkpoint yet
    assert all(t.last_commit_ms is None for t in before.tables)

    assert not before.run.running and before.run.phrase(0) == "not running"
    assert all(t.last_batch_age_s is None and t.newest_event_age_s is None for t in before.tables)

    run_once(spark, test_settings, ["clickstream"])
    caught_up = pipeline_status(test_settings, p)
    assert caught_up.lag == 0
    ages = {t.name: t.age_s for t in caught_up.tables}
    assert ages[p.layout.bronze.name] is not None and ages[p.layout.silver.name] is not None
    assert 0 <= ages[p.layout.bronze.name] < 600
    assert caught_up.run.since_ms is None, "a run that ended leaves no marker: not running"
    by_name = {t.name: t for t in caught_up.tables}
    for t in (p.layout.bronze, p.layout.silver, *p.layout.outputs):  # the last micro-batch of the query writing each
        assert 0 <= by_name[t.name].last_batch_age_s < 600 and 0 < by_name[t.name].last_batch_s < 300, by_name[t.name]
    newest = {name: spark.read.format("delta").load(layer.path).agg(F.max(column)).first()[0].timestamp()
              for name, layer, column in ((p.layout.bronze.name, p.layout.bronze, "kafka_timestamp"),
                                          (p.layout.silver.name, p.layout.silver, "event_time"))}  # fmt: skip
    for name, newest_s in newest.items():  # from the log's file statistics, no data read: the same as reading it
        assert abs(caught_up.now_ms / 1000 - by_name[name].newest_event_age_s - newest_s) < 0.2, (name, newest_s)
    assert "newest event: " in caught_up.line() and caught_up.line().startswith("clickstream: not running; ")

    send(test_settings, itertools.islice(events, 120))
    behind = pipeline_status(test_settings, p)
    assert behind.lag == 120
    ends = kafka_admin.end_offsets(test_settings.kafka, p.topic)
    committed = committed_offsets(p.layout.checkpoint("bronze"))[p.topic]
    assert {x.partition: x.lag for x in behind.partitions} == {k: ends[k] - committed[k] for k in ends}

    out = lakepipe("status", "clickstream", "--json", "--env", "test", "--conf-dir", str(tmp_path / "conf"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["pipelines"][0]["lag_records"] == 120
    out = lakepipe("broker", "status")  # the project's own broker, which the tests use
    assert out.returncode == 0 and "Kafka broker running at" in out.stdout, out.stdout + out.stderr


def test_slo_breaches_decide_the_exit_code(spark, tmp_path, unique_topic, kafka):
    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_DIR / "conf" / "pipelines", specs)
    with open(specs / "clickstream.yaml", "a", encoding="utf-8") as f:
        f.write("slo: {bronze: 2 seconds, silver: 2 seconds, gold: 1 hour, lag_records: 100}\n")
    conf = write_conf(tmp_path / "conf", unique_topic, specs=specs, one_query=False)  # bronze alone, below
    settings = load_settings("test", conf)
    cli = ("status", "clickstream", "--env", "test", "--conf-dir", str(conf))
    gen = ClickstreamGenerator(seed=6, start=dt.datetime(2026, 11, 30, 8, tzinfo=dt.UTC), events_per_second=5)
    events = gen.events()
    p = pipeline(settings, "clickstream")

    send(settings, itertools.islice(events, 300))
    time.sleep(2.5)
    waiting = pipeline_status(settings, p)
    behind = {t.name: t.behind_s for t in waiting.tables}
    assert waiting.breaches[0] == "lag 300 records > 100"
    assert behind[p.layout.bronze.name] >= 2.5 and waiting.breaches[1].startswith(f"{p.layout.bronze.name} behind by")
    assert behind[p.layout.silver.name] == 0, "bronze holds nothing silver has not taken"
    assert len(waiting.breaches) == 2

    run_once(spark, settings, ["clickstream"])
    caught_up = pipeline_status(settings, p)
    assert caught_up.breaches == [] and all(t.behind_s == 0 for t in caught_up.tables)
    out = lakepipe(*cli)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("SLO met"), out.stdout + out.stderr

    send(settings, itertools.islice(events, 50))  # into bronze only: silver falls behind, gold does not
    q = start_bronze(spark, settings.kafka, p.topic, p.layout.bronze.path, p.layout.checkpoint("bronze"),
                     {"availableNow": True}, "clickstream.bronze")  # fmt: skip
    q.awaitTermination()
    time.sleep(2.5)
    stale = pipeline_status(settings, p)
    behind = {t.name: t.behind_s for t in stale.tables}
    assert stale.lag == 0 and behind[p.layout.bronze.name] == 0
    assert 2.5 <= behind[p.layout.silver.name] < 120
    assert all(behind[o.name] == 0 for o in p.layout.outputs), "silver holds nothing new for gold"
    assert [b.split(" behind")[0] for b in stale.breaches] == [p.layout.silver.name]
    out = lakepipe(*cli)
    assert out.returncode == 1 and f"SLO breached: {p.layout.silver.name} behind by" in out.stdout, out.stdout + out.stderr

    out = lakepipe(*cli, "--prometheus")  # the same numbers for a monitoring stack, read back with its own parser
    assert out.returncode == 1, out.stderr
    samples = {(s.name, s.labels.get("table") or s.labels.get("partition")): s.value
               for f in text_string_to_metric_families(out.stdout) for s in f.samples}  # fmt: skip
    assert samples[("lakepipe_slo_breached", None)] == 1 and samples[("lakepipe_kafka_reachable", None)] == 1
    assert {k[1]: v for k, v in samples.items() if k[0] == "lakepipe_kafka_lag_records"} == {"0": 0, "1": 0}
    assert 2.5 <= samples[("lakepipe_table_behind_seconds", p.layout.silver.name)] < 120
    assert samples[("lakepipe_table_slo_seconds", p.layout.silver.name)] == 2

    # --watch: the same verdict again and again until Ctrl-C, which ends it normally
    watch = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *cli, "--watch", "0.5"], cwd=PROJECT_DIR,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline and seen.count("SLO breached") < 2:
        seen += watch.stdout.readline()
    watch.send_signal(signal.SIGINT)
    rest, err = watch.communicate(timeout=30)
    assert watch.returncode == 0, err
    assert seen.count("lakepipe status, every 0.5 s") >= 2 and seen.count(f"SLO breached: {p.layout.silver.name}") >= 2, seen


def test_a_run_is_seen_while_it_lasts_and_a_killed_one_is_named(tmp_path):
    from pipelines.ops.run_marker import marked, run_state

    checkpoints = str(tmp_path / "checkpoints" / "clickstream")
    assert run_state(checkpoints).phrase(0) == "not running"
    with marked([checkpoints], "app-1"):
        state = run_state(checkpoints)
        assert state.running and state.pid == os.getpid() and state.phrase(0).startswith("running since ")
    assert run_state(checkpoints).since_ms is None
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with marked([checkpoints], "app-2"):
        marker = tmp_path / "checkpoints" / "clickstream" / "_running.json"
        killed = json.loads(marker.read_text()) | {"pid": gone.pid}  # as if its process had been SIGKILLed
        marker.write_text(json.dumps(killed))
        state = run_state(checkpoints)
        assert not state.running and "ended without stopping: killed?" in state.phrase(0)
