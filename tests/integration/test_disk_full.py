"""A full disk in the middle of a run (issue 14): the lake on a small tmpfs of its own, a run that fills it stops
with one line (what it was writing, that the disk is full, the log file), leaves no partial commit, and once
there is room the next run resumes: every record in bronze once, silver and the audit agreeing with bronze.

Mounting a tmpfs needs the right to mount (root in a container that allows it); the test says so and is skipped
where that is refused.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import load_settings
from pipelines.model.project import load_project
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import write_conf
from tests.integration.test_cli_errors import lakepipe
from tests.support import run_once

pytestmark = [pytest.mark.kafka, pytest.mark.scenario]

EVENTS = 30_000  # ~15 MB of JSON: more than the 5 MB disk holds once bronze and silver write it


def mount_tmpfs(folder: Path, size: str, remount: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-o", f"remount,size={size}", str(folder)] if remount else ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here ({done.stderr.strip()}): run as root where mount is allowed")


def test_a_full_disk_stops_the_run_in_one_line_and_the_next_run_resumes_exactly(spark, tmp_path, unique_topic, kafka):
    lake = tmp_path / "conf" / "lake"  # write_conf's lake root
    mount_tmpfs(lake, "5m")
    try:
        conf = write_conf(tmp_path / "conf", unique_topic)
        settings = load_settings("test", conf)
        tally = Tally()
        publish(ClickstreamGenerator(seed=5).events(), KafkaSink(settings.kafka, unique_topic, tally), count=EVENTS)
        assert sum(tally.delivered.values()) == EVENTS

        failed = lakepipe("--conf-dir", str(conf), "--env", "test", "run", "clickstream", "--once", timeout=900)
        assert failed.returncode == 2, failed.stdout + failed.stderr[-3000:]
        lines = [ln for ln in failed.stderr.splitlines() if ln.startswith("lakepipe: ")]
        assert len(lines) == 1, failed.stderr[-3000:]
        assert re.search(r"disk full: writing .*/lake/tables/\S+ failed \(No space left on device; \d+ MB free", lines[0])
        assert "resumes from its checkpoints" in lines[0]
        assert "Traceback" not in failed.stderr and "\tat org." not in failed.stderr, failed.stderr[-3000:]
        assert len(failed.stderr.splitlines()) <= 4, failed.stderr  # the JVM's start-up notice, the event log's note
        log = Path(re.search(r"full log: (\S+)\)$", lines[0]).group(1))
        assert "No space left on device" in log.read_text()  # Spark's own account, stack traces included

        mount_tmpfs(lake, "400m", remount=True)
        run_once(spark, settings, ["clickstream"])

        p = load_project(settings, ["clickstream"]).pipeline("clickstream")
        read = spark.read.format("delta").load
        bronze, silver = read(p.layout.bronze.path), read(p.layout.silver.path)
        assert bronze.count() == EVENTS == bronze.select("partition", "offset").distinct().count()
        n_silver, quarantined = silver.count(), read(p.layout.quarantine.path).count()
        assert silver.select(*p.spec.dedup_keys).distinct().count() == n_silver
        audit = read(p.layout.batches.path).agg(
            F.sum("bronze_records").alias("bronze"), F.sum("silver_records").alias("silver"),
            F.sum("quarantined_records").alias("quarantined"), F.count("*").alias("batches"),
            F.countDistinct("query_id", "batch_id").alias("distinct_batches"),
        ).first()  # fmt: skip
        assert audit["batches"] == audit["distinct_batches"]  # one audit row per silver batch, none written twice
        assert (audit["bronze"], audit["silver"], audit["quarantined"]) == (EVENTS, n_silver, quarantined)
    finally:
        subprocess.run(["umount", "-l", str(lake)], capture_output=True)
