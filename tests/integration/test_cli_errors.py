"""Each common mistake gets one line saying what is wrong and how to fix it (exit code 2, no traceback)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_DIR, write_conf


def lakepipe(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=PROJECT_DIR, capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ),
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("lakepipe: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_conf(folder: Path, port: int, controller_port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "b.yaml").write_text(
        f"kafka:\n  bootstrap_servers: 127.0.0.1:{port}\n"
        f"local_broker:\n  port: {port}\n  controller_port: {controller_port}\n  heap: 256m\n"
        f"  state_dir: {folder / 'broker'}\n"
    )
    return folder


def test_unknown_config_key(tmp_path):
    (tmp_path / "x.yaml").write_text("spark:\n  masterr: local[1]\n")
    one_line_error(lakepipe("config", "--conf-dir", str(tmp_path), "--env", "x"), "unknown key 'spark.masterr'", "x.yaml")


@pytest.mark.parametrize("command", ["run", "optimize"])
def test_unknown_pipeline(tmp_path, command):
    conf = write_conf(tmp_path, "t")
    one_line_error(lakepipe(command, "nope", "--conf-dir", str(conf), "--env", "test"), "no pipeline 'nope'")
    one_line_error(lakepipe(command, "--conf-dir", str(conf), "--env", "test"), "name at least one pipeline", "--all")


def test_unreachable_broker(tmp_path):
    conf = write_conf(tmp_path, "t", bootstrap=f"127.0.0.1:{free_port()}")
    one_line_error(lakepipe("run", "clickstream", "--once", "--conf-dir", str(conf), "--env", "test"),
                   "cannot reach Kafka at 127.0.0.1:", "lakepipe up")  # fmt: skip


@pytest.mark.kafka
def test_missing_topic(tmp_path, kafka):
    conf = write_conf(tmp_path, "no.such.topic.here")
    one_line_error(lakepipe("run", "clickstream", "--once", "--conf-dir", str(conf), "--env", "test"),
                   "topic 'no.such.topic.here' does not exist")  # fmt: skip


def test_busy_port(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        conf = broker_conf(tmp_path, port, free_port())
        one_line_error(lakepipe("up", "--conf-dir", str(conf), "--env", "b"),
                       f"port {port} on 127.0.0.1 is held by another program", "local_broker.port")  # fmt: skip


def test_missing_java(tmp_path):
    conf = broker_conf(tmp_path, free_port(), free_port())
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"} | {"PATH": str(tmp_path)}
    one_line_error(lakepipe("up", "--conf-dir", str(conf), "--env", "b", env=env), "java not found", "JDK 17")


def test_jars_not_resolved(tmp_path):
    conf = broker_conf(tmp_path, free_port(), free_port())
    env = dict(os.environ, LAKEPIPE_JARS_DIR=str(tmp_path / "empty"))
    one_line_error(lakepipe("up", "--conf-dir", str(conf), "--env", "b", env=env), "no kafka jars in", "make jars")


def test_broker_up_reuse_status_down(tmp_path):
    """A second broker on free ports: start, reuse, status, stop, stop again."""
    conf = broker_conf(tmp_path, free_port(), free_port())
    args = ("--conf-dir", str(conf), "--env", "b")
    try:
        up = lakepipe("up", *args)
        assert up.returncode == 0 and "Kafka broker started at" in up.stdout, up.stderr
        again = lakepipe("up", *args)
        assert again.returncode == 0 and "already running" in again.stdout and "reusing it" in again.stdout
        assert "answering" in lakepipe("status", *args).stdout
    finally:
        down = lakepipe("down", *args)
    assert down.returncode == 0 and "Kafka broker stopped" in down.stdout
    assert "not running" in lakepipe("down", *args).stdout
    assert (tmp_path / "broker" / "data" / "meta.properties").exists(), "storage was formatted on first start"


def test_a_fault_flag_of_another_domain_is_named(tmp_path):
    conf = write_conf(tmp_path, "t")
    one_line_error(
        lakepipe("simulate", "iot", "--fraud", "0.1", "--conf-dir", str(conf), "--env", "test"),
        "--fraud does not apply to the iot simulator", "--anomalies",
    )


@pytest.mark.kafka
def test_simulate_writes_the_ground_truth_apart_from_the_events(tmp_path, kafka):
    import json

    conf = write_conf(tmp_path, "t", topics={"payments": f"test.truth.{os.getpid()}.{tmp_path.name}"})
    truth = tmp_path / "truth.json"
    result = lakepipe("simulate", "payments", "--events", "2000", "--fraud", "0.05", "--seed", "3", "--truth", str(truth),
                      "--out", str(tmp_path / "events.jsonl"), "--no-progress", "--conf-dir", str(conf), "--env", "test")  # fmt: skip
    assert result.returncode == 0, result.stderr
    incidents = json.loads(truth.read_text())["incidents"]
    assert incidents and {i["kind"] for i in incidents} <= {"card_testing", "velocity", "impossible_travel", "large_amount"}
    from pipelines.simulators.base import ReplaySource

    sent = {e.payload()["txn_id"]: e for e in ReplaySource(tmp_path / "events.jsonl").events() if e.payload()}
    assert all(t in sent for i in incidents for t in i["txn_ids"]), "every incident's transactions were sent"
    assert all("fraud" not in e.value.decode() and "card_testing" not in e.value.decode() for e in sent.values()), \
        "no label inside an event"
