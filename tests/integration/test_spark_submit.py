"""`spark-submit jobs/run_pipeline.py --once` works as on a cluster: package in --py-files, jars in --jars."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import load_settings
from pipelines.platform.jars import jar_files
from pipelines.platform.local_cluster import package_zip
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf
from tests.integration.test_catalog import check_catalog

# spark-submit is a platform of its own (a JVM it starts, the catalog's metastore client): make test-platforms
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.platform]


def test_spark_submit_once(spark, tmp_path, unique_topic, kafka, metastore):
    """Also the catalog's end-to-end test: the job registers its tables in the JVM's Hive metastore (given to
    spark-submit as a cluster admin would: lakepipe never forces its local catalog on a JVM it did not start),
    which is the local metastore server's database in the lake root; a new application then reads them by name."""
    conf = write_conf(tmp_path / "conf", unique_topic, catalog=True)
    settings = load_settings("test", conf)
    tally = publish(ClickstreamGenerator(seed=3).events(), KafkaSink(settings.kafka, unique_topic, Tally()), count=200)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    client = [str(j) for j in jar_files("metastore") if j.name.startswith(("derbyclient", "derbyshared"))]
    cmd = [
        str(spark_submit), "--master", "local[2]",
        "--jars", ",".join(str(j) for j in jar_files("spark")),
        "--driver-class-path", os.pathsep.join(client),
        *[a for key, value in settings.metastore_conf().items() for a in ("--conf", f"{key}={value}")],
        "--py-files", str(package_zip(tmp_path / "lakepipe.zip")),
        "--conf", f"spark.pyspark.python={sys.executable}",
        str(PROJECT_DIR / "jobs" / "run_pipeline.py"),
        "--pipeline", "clickstream", "--once", "--conf-dir", str(conf), "--env", "test",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYSPARK_")}
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    read = lambda layer, name: spark.read.format("delta").load(f"{settings.tables_root}/{layer}/{name}")  # noqa: E731
    assert read("bronze", "clickstream_events_raw").count() == 200
    assert read("silver", "clickstream_events").count() == tally.expected()["silver"] == 200
    assert read("gold", "clickstream_sessions").count() > 0
    assert "catalog: 9 tables registered (lakepipe_audit, lakepipe_bronze, lakepipe_gold, lakepipe_quarantine, " \
           "lakepipe_silver)" in result.stdout, result.stdout  # fmt: skip
    check_catalog(conf, settings, tally.expected()["silver"], 200)
