"""`spark-submit jobs/run_pipeline.py --once` works as on a cluster: package in --py-files, jars in --jars."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyspark
import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import load_settings
from pipelines.platform.jars import jar_files
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import PROJECT_DIR, write_conf

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def package_zip(dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as z:
        for f in (PROJECT_DIR / "pipelines").rglob("*.py"):
            z.write(f, f.relative_to(PROJECT_DIR))
    return dest


def test_spark_submit_once(spark, tmp_path, unique_topic, kafka):
    conf = write_conf(tmp_path / "conf", unique_topic)
    settings = load_settings("test", conf)
    tally = publish(ClickstreamGenerator(seed=3).events(), KafkaSink(settings.kafka, unique_topic, Tally()), count=200)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    cmd = [
        str(spark_submit), "--master", "local[2]",
        "--jars", ",".join(str(j) for j in jar_files("spark")),
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
