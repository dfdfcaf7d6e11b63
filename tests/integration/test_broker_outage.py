"""A broker outage in the middle of a continuous run and of a simulator's sending (issue 14).

The test runs a broker of its own on free ports (never the shared one other tests use), SIGKILLs it while
`lakepipe run clickstream` reads from it and a simulator sends to it, and starts it again a minute later: every
event the simulator had acknowledged reaches bronze once, the run says once that the broker does not answer and
once that it is back, and Ctrl-C then stops the run at once, cleanly (no traceback).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import Settings
from pipelines.platform import kafka_admin, local_broker
from pipelines.platform.processes import free_port
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR
from tests.integration.test_exactly_once import start_pipeline, wait_for_new_commit
from tests.support import run_once, without_gold

pytestmark = [pytest.mark.kafka, pytest.mark.scenario]

OUTAGE_SECONDS = 60
EVENTS = 1500


def own_broker(tmp_path: Path, topic: str) -> Settings:
    """Settings (bronze and silver of clickstream) for a broker on free ports with its state under `tmp_path`."""
    port, controller = free_port(), free_port()
    extra = f"local_broker:\n  port: {port}\n  controller_port: {controller}\n  state_dir: {tmp_path / 'broker'}\n"
    settings = without_gold(tmp_path, topic, bootstrap=f"127.0.0.1:{port}", extra=extra)
    print(local_broker.start(settings))
    return settings


def bronze_rows(spark, settings: Settings) -> int:
    path = f"{settings.tables_root}/bronze/clickstream_events_raw"
    return spark.read.format("delta").load(path).count() if Path(path, "_delta_log").is_dir() else 0


def test_a_run_and_a_simulator_ride_out_a_broker_outage_and_ctrl_c_stops_at_once(spark, tmp_path, unique_topic, kafka):
    settings = own_broker(tmp_path, unique_topic)
    proc = None
    try:
        gen = ClickstreamGenerator(seed=8, start=dt.datetime(2026, 12, 1, 9, tzinfo=dt.UTC))
        tally = Tally()
        sink = KafkaSink(settings.kafka, unique_topic, tally)
        sender = threading.Thread(target=publish, args=(gen.events(), sink), kwargs={"count": EVENTS, "rate": 12})
        sender.start()  # ~125 s of sending: before, during and after the outage
        log = tmp_path / "pipeline.log"
        proc = start_pipeline(settings.source.parent, log)
        wait_for_new_commit(Path(settings.tables_root) / "silver/clickstream_events", proc)

        os.kill(local_broker.running_pid(settings), signal.SIGKILL)  # a crash, not a clean shutdown
        time.sleep(OUTAGE_SECONDS)
        assert proc.poll() is None, f"the run ended during the outage:\n{log.read_text()[-3000:]}"
        print(local_broker.start(settings))

        sender.join(timeout=400)
        assert not sender.is_alive() and not tally.failed, tally.errors[:3]
        acked = sum(tally.delivered.values())
        assert acked == EVENTS, tally.to_dict()
        deadline = time.monotonic() + 240
        while bronze_rows(spark, settings) < acked and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(2)
        assert proc.poll() is None, f"the run ended after the outage:\n{log.read_text()[-3000:]}"

        stop_asked = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
        code = proc.wait(180)
        stop_seconds = time.monotonic() - stop_asked
        output = log.read_text()
        assert code == 0, output[-3000:]
        assert "Traceback" not in output and "Exception" not in output, output[-3000:]
        servers = settings.kafka.bootstrap_servers
        said = [ln for ln in output.splitlines() if ln.startswith(f"Kafka at {servers} ")]
        assert len(said) == 2, output[-3000:]  # one line when it stops answering, one when it is back
        assert "has not answered since" in said[0] and "answers again" in said[1], said
        assert "WARN NetworkClient" not in output, "no warning per reconnection attempt on the console"
        print(f"Ctrl-C after the outage stopped the run in {stop_seconds:.1f} s")
        assert stop_seconds < 60, f"the stop took {stop_seconds:.0f} s"

        bronze = spark.read.format("delta").load(f"{settings.tables_root}/bronze/clickstream_events_raw")
        assert bronze.count() == acked, "bronze holds every acknowledged event"
        assert bronze.select("topic", "partition", "offset").distinct().count() == acked, "each once"
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        local_broker.stop(settings)


SIMULATED = 400


def test_lakepipe_simulate_alone_rides_out_a_broker_outage_and_says_so(spark, tmp_path, unique_topic, kafka):
    """`lakepipe simulate` sending while its broker is SIGKILLed for 30 s: one line when the broker stops answering,
    one when it is back, exit 0, and every event in Kafka once (then in bronze)."""
    settings = own_broker(tmp_path, unique_topic)
    log = tmp_path / "simulate.log"
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(settings.source.parent), "--env", "test", "simulate",
           "clickstream", "--events", str(SIMULATED), "--rate", "8", "--no-progress", "--tally-json", str(tmp_path / "t.json")]  # fmt: skip
    proc = None
    try:
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, cwd=PROJECT_DIR, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True)  # fmt: skip
        time.sleep(12)  # ~50 s of sending: before, during and after the outage
        assert proc.poll() is None, log.read_text()
        os.kill(local_broker.running_pid(settings), signal.SIGKILL)
        time.sleep(30)
        print(local_broker.start(settings))
        code = proc.wait(400)
        output = log.read_text()
        assert code == 0, output[-3000:]
        servers = settings.kafka.bootstrap_servers
        said = [ln for ln in output.splitlines() if ln.startswith(f"Kafka at {servers} ")]
        assert len(said) == 2, output[-3000:]
        assert "has not answered since" in said[0] and "answers again" in said[1], said
        assert "Traceback" not in output and "FAIL|rdkafka" not in output, output[-3000:]
        assert json.loads((tmp_path / "t.json").read_text())["failed"] == {}, output[-3000:]
        assert sum(kafka_admin.end_offsets(settings.kafka, unique_topic).values()) == SIMULATED, "each event once"
        run_once(spark, settings, ["clickstream"])
        assert bronze_rows(spark, settings) == SIMULATED
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        local_broker.stop(settings)


def test_a_continuous_run_rides_out_an_outage_longer_than_sparks_offset_retries(spark, tmp_path, unique_topic, kafka):
    """Spark's Kafka source asks for the latest offsets 3 times, each bounded by the client's default.api.timeout.ms
    (a minute by default; 3 s here, so that 45 s of outage outlast its retries ~4 times): a continuous run keeps
    asking, says once that the broker does not answer, and reads on when it is back."""
    port, controller = free_port(), free_port()
    extra = f"local_broker:\n  port: {port}\n  controller_port: {controller}\n  state_dir: {tmp_path / 'broker'}\n"
    short = "  spark_options:\n    default.api.timeout.ms: '3000'\n    request.timeout.ms: '2000'\n"
    settings = without_gold(tmp_path, unique_topic, bootstrap=f"127.0.0.1:{port}", extra=extra, kafka_extra=short)
    print(local_broker.start(settings))
    proc = None
    try:
        gen = ClickstreamGenerator(seed=9).events()
        publish(gen, sink := KafkaSink(settings.kafka, unique_topic, Tally()), count=100)
        sink.close()
        log = tmp_path / "pipeline.log"
        proc = start_pipeline(settings.source.parent, log)
        wait_for_new_commit(Path(settings.tables_root) / "silver/clickstream_events", proc)

        os.kill(local_broker.running_pid(settings), signal.SIGKILL)
        time.sleep(45)
        assert proc.poll() is None, f"the run ended during the outage:\n{log.read_text()[-3000:]}"
        print(local_broker.start(settings))
        publish(gen, sink := KafkaSink(settings.kafka, unique_topic, Tally()), count=100)
        sink.close()
        deadline = time.monotonic() + 240
        while bronze_rows(spark, settings) < 200 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(2)
        assert proc.poll() is None, f"the run ended after the outage:\n{log.read_text()[-3000:]}"
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(180) == 0, log.read_text()[-3000:]
        output = log.read_text()
        said = [ln for ln in output.splitlines() if ln.startswith(f"Kafka at {settings.kafka.bootstrap_servers} ")]
        assert len(said) == 2 and "has not answered since" in said[0] and "answers again" in said[1], output[-3000:]
        bronze = spark.read.format("delta").load(f"{settings.tables_root}/bronze/clickstream_events_raw")
        assert bronze.count() == 200 == bronze.select("partition", "offset").distinct().count()
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        local_broker.stop(settings)
