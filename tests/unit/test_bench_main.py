"""`make bench` runs for an hour: a figure that fails is reported in one line and the others are kept."""

from __future__ import annotations

import json

from pipelines.bench.__main__ import Timed
from pipelines.bench.common import Figure
from pipelines.bench.report import report

INFO = {"cores": 2, "memory_gb": 8, "java": "OpenJDK 17", "pyspark": "4.2.0", "when": "2026-12-04T21:00:00"}


def test_a_failing_figure_is_left_out_with_its_reason_and_its_queries_stopped(spark, tmp_path, capsys):
    left_running = spark.readStream.format("rate").load().writeStream.format("noop").start()  # a real query
    timed = Timed(lambda: spark.streams.active)
    p2 = timed(lambda: Figure("P2", "bronze", 300.0, 400.0), "P2")

    def broken() -> Figure:
        raise RuntimeError("broker went away\n\tat org.apache.kafka...")

    assert timed(broken, "E1") == [] and not left_running.isActive
    assert timed.failed == {"E1": "RuntimeError: broker went away"}
    assert capsys.readouterr().err.strip() == "error: E1 not measured (RuntimeError: broker went away); the other figures go on"
    assert [f.name for f in p2] == ["P2"] and p2[0].seconds >= 0

    text = report(p2, INFO, "make bench", tmp_path, 3, timed.failed)
    assert "| P2 |" in text and text.splitlines()[-1] == "Not measured: E1 (RuntimeError: broker went away)"
    saved = json.loads(next(tmp_path.glob("bench-*.json")).read_text())
    assert saved["not_measured"] == {"E1": "RuntimeError: broker went away"} and [f["name"] for f in saved["figures"]] == ["P2"]
