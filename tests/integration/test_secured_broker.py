"""A secured broker (issue 14): the local broker with a SASL_SSL listener (SCRAM-SHA-512 over TLS, a CA the
project's set-up made with keytool), the simulator and a pipeline run through it with credentials from environment
variables, a wrong password refused in one line, and the password nowhere: not in the console, the lake (tables,
event log, checkpoints), `lakepipe config`, the commands' full logs, Spark's event log (what Spark's UI shows: its
properties and plans), nor any other file the test made (the broker's state included).

The broker is the test's own, on free ports (never the shared one other tests use).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipelines.model.config import Settings
from pipelines.platform import kafka_admin, local_broker
from pipelines.platform.processes import free_port
from tests.integration.test_cli_errors import lakepipe, one_line_error
from tests.support import without_gold

pytestmark = [pytest.mark.kafka]

EVENTS = 300
# a quote and a backslash: the JAAS line Spark's Kafka client gets must escape them
PASSWORD = f'pa"ss\\word-{uuid.uuid4().hex[:12]}'


def secured_settings(tmp_path: Path, topic: str) -> tuple[Settings, dict[str, str]]:
    """Settings of a broker of its own with a SASL_SSL listener, the clients pointed at it; the environment
    holding the credentials."""
    port, controller, secure = free_port(), free_port(), free_port()
    state = tmp_path / "broker"
    extra = (f"local_broker:\n  port: {port}\n  controller_port: {controller}\n  sasl_ssl_port: {secure}\n"
             f"  state_dir: {state}\n  heap: 384m\n"
             f"spark:\n  master: local[2]\n  shuffle_partitions: 2\n  conf:\n    spark.eventLog.enabled: 'true'\n"
             f"    spark.eventLog.compress: 'false'\n    spark.eventLog.dir: {tmp_path / 'spark-events'}\n")  # fmt: skip
    security = ("  security:\n    username: ${TEST_KAFKA_USER}\n    password: ${TEST_KAFKA_PASSWORD}\n"
                f"    ca_file: {state / 'tls' / 'ca.pem'}\n")  # fmt: skip
    (tmp_path / "spark-events").mkdir()
    env = {**os.environ, "TEST_KAFKA_USER": "lakepipe-test", "TEST_KAFKA_PASSWORD": PASSWORD}
    os.environ.update({k: env[k] for k in ("TEST_KAFKA_USER", "TEST_KAFKA_PASSWORD")})
    settings = without_gold(tmp_path, topic, bootstrap=f"127.0.0.1:{secure}", extra=extra, kafka_extra=security)
    return settings, env


def test_a_pipeline_and_the_simulator_run_through_sasl_ssl_and_the_password_shows_nowhere(
    spark, tmp_path, unique_topic, kafka, monkeypatch
):  # fmt: skip
    monkeypatch.setenv("TEST_KAFKA_USER", "x")  # restored after the test; secured_settings sets the real values
    settings, env = secured_settings(tmp_path, unique_topic)
    conf = ["--env", "test", "--conf-dir", str(settings.source.parent)]
    shown: list[str] = []
    try:
        started = local_broker.start(settings)
        assert "SASL_SSL" in started and "SCRAM-SHA-512" in started, started
        shown.append(started)
        # the plain listener is not what the clients use: the secured one lets the user in, and only it
        assert kafka_admin.is_reachable(settings.kafka, timeout=10)

        sent = lakepipe(*conf, "simulate", "clickstream", "--events", str(EVENTS), "--no-progress", env=env)
        assert sent.returncode == 0, sent.stderr
        assert f"delivered {EVENTS}" in sent.stdout, sent.stdout
        ran = lakepipe(*conf, "run", "clickstream", "--once", env=env, timeout=600)
        assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
        assert f"clickstream.silver: {EVENTS} rows" in ran.stdout, ran.stdout  # bronze's and silver's query
        # Spark's log and the Python workers' output went to the run's log file: at most the JVM's start-up notice
        assert len([ln for ln in ran.stderr.splitlines() if "incubator modules" not in ln]) == 0, ran.stderr[-3000:]
        bronze = spark.read.format("delta").load(f"{settings.tables_root}/bronze/clickstream_events_raw")
        assert bronze.count() == EVENTS
        assert bronze.select("partition", "offset").distinct().count() == EVENTS
        printed = lakepipe(*conf, "config", env=env)
        assert printed.returncode == 0 and "lakepipe-test" in printed.stdout, printed.stdout + printed.stderr

        wrong = {**env, "TEST_KAFKA_PASSWORD": "not-the-password-" + uuid.uuid4().hex[:8]}
        refused = lakepipe(*conf, "run", "clickstream", "--once", env=wrong)
        line = one_line_error(refused, "refused user 'lakepipe-test' (SCRAM-SHA-512)", "wrong username or password")
        assert wrong["TEST_KAFKA_PASSWORD"] not in refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr and "at org.apache" not in refused.stderr, line
        shown += [sent.stdout, sent.stderr, ran.stdout, ran.stderr, printed.stdout, printed.stderr,
                  refused.stdout, refused.stderr]  # fmt: skip
    finally:
        local_broker.stop(settings)

    for text in shown:
        assert PASSWORD not in text, text[-2000:]
    spark_events = list((tmp_path / "spark-events").rglob("*"))
    assert any(f.is_file() and f.stat().st_size > 10_000 for f in spark_events), spark_events  # the run's, uncompressed
    kafka_source = False
    logs = list((tmp_path / ".lakepipe" / "logs").glob("*.log"))  # the commands' full logs (Spark's, the workers')
    assert logs
    # every file the test made: the lake (tables, event log, checkpoints), the full logs, Spark's event log, the
    # broker's state (its configuration, TLS files, metadata log and topic data)
    for f in tmp_path.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert PASSWORD.encode() not in data, f
            kafka_source |= f in spark_events and f"Subscribe[{unique_topic}]".encode() in data
    assert kafka_source  # Spark recorded the Kafka source's plans, so the scan above looked where it could be
    assert PASSWORD not in repr(settings) + repr(settings.to_dict())
