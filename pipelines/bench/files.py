"""F1: the files a continuous run leaves per table, without and with Delta's auto compaction.

The whole clickstream pipeline runs continuously for 10 minutes (2 with --quick) at a steady rate, on the
environment's trigger interval as `lakepipe run` runs it, twice: with no `files` properties (baseline), and with `files: {auto_compact: [every layer]}` (ours). Reported: the files of every table at the
end (ours / baseline, lower is better), and the silver and gold micro-batch durations of both runs, since a
batch whose commit triggers a compaction takes longer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from pathlib import Path

from pipelines.bench.common import DriverMemory, Figure, Topics, payloads
from pipelines.bench.latency import PacedSender, pipeline_settings
from pipelines.engine import runner
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import Project, load_project
from pipelines.model.spec import FilesSpec
from pipelines.ops.maintenance import file_count

RATE = 500  # events/s: a fifth of what the pipeline sustains (E1), so every run keeps up
LAYERS = ("bronze", "silver", "quarantine", "gold", "audit")


def with_files(project: Project, files: FilesSpec) -> Project:
    p = project.pipeline("clickstream")
    changed = dataclasses.replace(p, spec=dataclasses.replace(p.spec, files=files))
    return dataclasses.replace(project, pipelines={**project.pipelines, "clickstream": changed})


def _durations(q) -> list[float]:  # noqa: ANN001
    return [p.batchDuration / 1000 for p in q.recentProgress if p.numInputRows]


def continuous_run(spark, settings: Settings, topics: Topics, scratch: Path, files: FilesSpec, minutes: float) -> dict:  # noqa: ANN001
    """Run the pipeline at RATE for `minutes`; files per table at the end and batch durations per query."""
    name = "on" if files.auto_compact else "off"
    topic = topics.new(f"f1-{name}")
    trigger = settings.streaming.trigger_interval
    env = pipeline_settings(settings, scratch / f"f1-{name}", topic, trigger)
    project = with_files(load_project(env, ["clickstream"]), files)
    queries = runner.start_all(spark, project, ["clickstream"], {"processingTime": trigger})
    try:
        values = payloads(int(RATE * minutes * 60), seed=5, event_times=(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), RATE))
        sender = PacedSender(settings.kafka, topic, values, RATE)
        sender.start()
        while sender.is_alive():
            sender.join(timeout=5)
            for q in queries:
                runner.raise_if_failed(q, queries)
        if sender.error:
            raise LakepipeError(f"paced producer failed: {sender.error}")
        durations = {q.name.rsplit(".", 1)[-1]: _durations(q) for q in queries}
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
    layout = project.pipeline("clickstream").layout
    return {"files": {t.name: file_count(spark, t.path)[0] for t in layout.tables if t.pipeline == "clickstream"},
            "batch_seconds": {q: {"p50": round(statistics.median(d), 2), "max": round(max(d), 2), "batches": len(d)}
                              for q, d in durations.items() if d}}  # fmt: skip


def bench_files(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool) -> Figure:  # noqa: ANN001
    minutes = 2 if quick else 10
    memory = DriverMemory(spark)
    with memory.sampled():
        off = continuous_run(spark, settings, topics, scratch, FilesSpec(), minutes)
        on = continuous_run(spark, settings, topics, scratch, FilesSpec(auto_compact=LAYERS), minutes)
    return Figure("F1", f"files in the clickstream tables after a {minutes}-minute continuous run at {RATE} events/s: "
                  "auto compaction on every table / off (lower is better)", sum(on["files"].values()),
                  sum(off["files"].values()), unit="files", lower_is_better=True, peak_rss_mb=memory.peak_mb,
                  details={"auto_compact": on, "off": off})  # fmt: skip
