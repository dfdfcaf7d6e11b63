"""B1: a gold backfill over one day of silver / the streaming `--once` run that builds the same gold from scratch.

One day of clickstream events (event times spread over 24 hours) goes through the pipeline once to build silver.
Baseline: the revenue-per-minute query alone, from a new checkpoint into an empty table, as an AvailableNow
run (what building that table by replaying the stream costs). Ours: `lakepipe backfill --layer gold` of the
same table over that day (recomputed from silver as a batch, replaced in one commit). Both in silver rows per
second; goal >= 1.0 (a batch recomputation should never be slower than replaying the stream).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

from pipelines.backfill.gold import backfill_output
from pipelines.bench.common import Figure, Topics, payloads, produce, timed_pairs
from pipelines.bench.latency import pipeline_settings
from pipelines.engine import runner
from pipelines.engine.gold.outputs import start_output
from pipelines.engine.tables import create, output_schema
from pipelines.model.config import Settings
from pipelines.model.project import load_project

TABLE = "clickstream_revenue_per_minute"
DAY = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)


def bench_backfill(spark, settings: Settings, topics: Topics, n: int, scratch: Path) -> Figure:  # noqa: ANN001
    topic = topics.new("b1")
    produce(settings.kafka, topic, payloads(n, event_times=(DAY, n / 86_400)))
    env = pipeline_settings(settings, scratch / "b1", topic, "0 seconds")
    project = load_project(env, ["clickstream"])
    runner.run(spark, project, ["clickstream"], once=True)
    p = project.pipeline("clickstream")
    o = next(o for o in p.spec.outputs if o.name == TABLE)
    rows = spark.read.format("delta").load(p.layout.silver.path).count()
    start, end = DAY.replace(tzinfo=None), (DAY + dt.timedelta(days=1)).replace(tzinfo=None)

    def replay() -> float:
        table = p.layout.output(TABLE)
        shutil.rmtree(table.path, ignore_errors=True)
        shutil.rmtree(p.layout.checkpoint(f"gold/{TABLE}"), ignore_errors=True)
        create(spark, table, output_schema(spark, p, o))
        t0 = time.perf_counter()
        start_output(spark, p, o, {"availableNow": True}).awaitTermination()
        return rows / (time.perf_counter() - t0)

    def backfill() -> float:
        t0 = time.perf_counter()
        backfill_output(spark, project, "clickstream", TABLE, start, end, force=True)
        return rows / (time.perf_counter() - t0)

    ours, base = timed_pairs(backfill, replay)
    return Figure.of_runs("B1", f"gold backfill of {TABLE} over one day of silver ({rows:,} rows) / the same table built "
                          "by its streaming query from scratch (AvailableNow), silver rows/s", ours, base, target=1.0)  # fmt: skip
