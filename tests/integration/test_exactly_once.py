"""Exactly-once across crashes: SIGKILL the running pipeline at different moments, restart, drain.

While a producer sends a known mix, `lakepipe run clickstream` (continuous, a separate process) is killed with
SIGKILL right after a silver commit, i.e. in the middle of gold's work and the next bronze and silver batches
(`make test`); the scenario version (`make test-scenarios`) kills it three times: right after a bronze, a
silver and a gold commit (`make chaos` kills at random moments, many times). After a final `--once` drain, bronze
holds every Kafka offset exactly once, silver every event once, quarantine every reject once, the audit
balances, gold equals a batch recomputation over silver, and quality_results holds one row per rule per silver
batch. A last continuous run stops cleanly on SIGINT (Ctrl-C).
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

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.model.config import load_settings
from pipelines.ops.run_marker import run_state
from pipelines.platform import kafka_admin
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf
from tests.support import assert_exactly_once, pipeline, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 4000


def commits(table_dir: Path) -> int:
    log = table_dir / "_delta_log"
    return len(list(log.glob("*.json"))) if log.is_dir() else 0


def start_pipeline(conf: Path, log: Path, names: tuple[str, ...] = ("clickstream",)) -> subprocess.Popen:
    """`lakepipe run NAMES` (continuous) in a process group of its own, its output appended to `log`."""
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(conf), "--env", "test", "run", *names]
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


BRONZE, SILVER, GOLD = "bronze/clickstream_events_raw", "silver/clickstream_events", "gold/clickstream_revenue_per_minute"


@pytest.mark.parametrize("kill_after", [
    pytest.param((SILVER,), id="one-kill"),
    pytest.param((BRONZE, SILVER, GOLD), id="three-kills", marks=pytest.mark.scenario),
])  # fmt: skip
def test_sigkill_loses_and_duplicates_nothing(spark, tmp_path, unique_topic, kafka, kill_after):
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
    for table_dir in (tables / t for t in kill_after):
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
    assert_exactly_once(spark, settings, unique_topic, EVENTS, tally)

    # Ctrl-C: a continuous run stops cleanly (exit 0) and prints its per-query summary.
    publish(gen.events(), KafkaSink(settings.kafka, unique_topic, Tally()), count=50)
    ctrl_c_log = tmp_path / "ctrl-c.log"
    proc = start_pipeline(conf, ctrl_c_log)
    batches = Path(p.layout.checkpoint("bronze")) / "commits"  # of the one query writing bronze and silver
    try:
        ended = len(list(batches.glob("[0-9]*")))
        wait_for_new_commit(tables / "silver/clickstream_events", proc)
        deadline = time.monotonic() + 120
        while len(list(batches.glob("[0-9]*"))) == ended and time.monotonic() < deadline:  # the micro-batch ends
            time.sleep(0.1)
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
    assert "clickstream.silver: 50 rows" in output, output[-3000:]
