"""The clickstream pipeline on a real Spark standalone cluster, SIGKILL of its driver included.

A master and two workers, each its own JVM started from PySpark's own jars (`lakepipe cluster up`); the jobs go
there with `spark-submit --master spark://...` (`lakepipe cluster submit`), the package in `--py-files`, the
jars in `--jars`. Executors are separate JVMs whose Python cannot import lakepipe unless the job shipped it, so a
path that works only in local mode fails here. A continuous run is SIGKILLed (its driver: spark-submit and its
Python) after a silver commit, in the middle of gold's work; a `--once` run then drains, and every exactly-once
invariant of `test_exactly_once` holds.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.errors import ClusterError
from pipelines.model.config import load_settings
from pipelines.platform import kafka_admin, local_cluster
from pipelines.platform.processes import free_port
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf
from tests.integration.test_exactly_once import wait_for_new_commit
from tests.support import assert_exactly_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.platform]

EVENTS = 1500


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, kafka):
    """Settings of a conf folder of its own (a new topic, a lake) with a running two-worker cluster."""
    root = tmp_path_factory.mktemp("cluster")
    cluster = f"local_cluster: {{port: {free_port()}, webui_port: {free_port()}, state_dir: {root / 'cluster'}}}\n"
    settings = load_settings("test", write_conf(root / "conf", f"test.cluster.{uuid.uuid4().hex[:10]}", extra=cluster))
    print(local_cluster.start(settings))
    yield settings
    print(local_cluster.stop(settings))
    assert not local_cluster.running(settings), "the cluster's processes are gone after `cluster down`"


def submit(settings, log: Path, *job_args: str) -> subprocess.Popen:  # noqa: ANN001
    cmd = [sys.executable, "-m", "pipelines.cli", "--conf-dir", str(settings.source.parent), "--env", "test",
           "cluster", "submit", str(PROJECT_DIR / "jobs" / "run_pipeline.py"), "--pipeline", "clickstream", *job_args]  # fmt: skip
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_executors_see_only_what_is_shipped(cluster):
    python = str(local_cluster.executor_python(cluster))
    assert subprocess.run([python, "-c", "import pyspark, pandas, pyarrow"], capture_output=True).returncode == 0
    no_lakepipe = subprocess.run([python, "-c", "import pipelines"], capture_output=True, text=True, cwd="/")
    assert no_lakepipe.returncode != 0 and "No module named 'pipelines'" in no_lakepipe.stderr


def test_sigkill_of_the_driver_on_the_cluster_then_once(spark, cluster, tmp_path):
    settings, topic = cluster, cluster.pipeline("clickstream").topic
    tables = Path(settings.tables_root)
    faults = FaultRates(exact_duplicate=0.03, conflicting_duplicate=0.02, malformed=0.05, out_of_order=0.05)
    gen = ClickstreamGenerator(seed=34, start=dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC), faults=faults)
    kafka_admin.ensure_topic(settings.kafka, topic)
    tally = Tally()
    producer = threading.Thread(target=publish, args=(gen.events(), KafkaSink(settings.kafka, topic, tally)),
                                kwargs={"count": EVENTS, "rate": 50}, daemon=True)  # fmt: skip
    producer.start()

    log = tmp_path / "cluster-run.log"
    proc = submit(settings, log)
    try:
        wait_for_new_commit(tables / "silver/clickstream_events", proc, timeout=300)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver: spark-submit's JVM and its Python; executors live on
        proc.wait(30)
    producer.join(timeout=180)
    assert not producer.is_alive() and sum(tally.delivered.values()) == EVENTS, tally.to_dict()

    drain = submit(settings, tmp_path / "cluster-once.log", "--once")
    assert drain.wait(600) == 0, (tmp_path / "cluster-once.log").read_text()[-4000:]
    assert_exactly_once(spark, settings, topic, EVENTS, tally)

    # Both runs had executors on both workers, which fetched the package and the jars from the driver.
    state = Path(settings.resolve(settings.local_cluster.state_dir))
    apps = {d.name for d in state.glob("work-*/app-*")}
    assert len(apps) == 2, apps
    for app in apps:
        shipped = list(state.glob(f"work-*/{app}/*/lakepipe.zip"))
        assert len(shipped) == 2, f"{app}: executors with the package: {shipped}"
        assert len(list(state.glob(f"work-*/{app}/*/delta-spark_*.jar"))) == 2
    assert local_cluster.alive_workers(settings) == 2, "the workers outlive a killed driver"


def test_busy_port_and_stopped_cluster_are_one_line_errors(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        extra = f"local_cluster: {{port: {port}, webui_port: {free_port()}, state_dir: {tmp_path / 'cluster'}}}\n"
        settings = load_settings("test", write_conf(tmp_path / "conf", "test.unused", extra=extra))
        with pytest.raises(ClusterError, match=f"port {port} on 127.0.0.1 is held by another program: stop it, or set "
                                               "local_cluster.port in "):  # fmt: skip
            local_cluster.start(settings)
    with pytest.raises(ClusterError, match="the Spark cluster is not running at spark://127.0.0.1:.*`lakepipe cluster up`"):
        local_cluster.submit_command(settings, "jobs/run_pipeline.py", [])
    assert not local_cluster.running(settings)
