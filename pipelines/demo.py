"""`lakepipe demo`: simulate every domain with faults, run every pipeline, and summarise each domain.

Two waves, each followed by one `--once` run of all pipelines in the same Spark session. The change-data-capture
domains (customers, orders) are live: the demo starts the local PostgreSQL and Debezium (`lakepipe cdc up`)
and commits random transactions, which the connector streams to the pipelines' topics. What each domain
sends and summarises is its own (`pipelines/domains/<name>/__init__.py`); the clickstream's second wave, for
instance, brings late events (older than the watermark: they reach silver but are left out of gold).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession

from pipelines.domains import DemoRun, domains
from pipelines.engine import runner
from pipelines.model.project import Project
from pipelines.platform import kafka_admin, local_cdc, local_metastore
from pipelines.simulators.base import KafkaSink, Tally, publish

Say = Callable[[str], None]


def reset(project: Project) -> None:
    """Start the demo from scratch: its simulated topics and its lake folder (only those) are removed (a live
    source's topics stay: they are its connector's record of the database, which the lake is rebuilt from)."""
    for name, d in domains().items():
        if d.demo.live is None:
            kafka_admin.delete_topic(project.settings.kafka, project.topic(name))
    lake = Path(project.settings.lake_root)
    if lake.exists():
        local_metastore.release(project.settings)  # the lake's catalog database goes with it
        shutil.rmtree(lake)


def run_demo(spark: SparkSession, project: Project, events: int = 3000, say: Say = print) -> dict:
    now = dt.datetime.now(dt.UTC)
    seed = int(time.time())
    names = list(domains())
    if any(d.demo.live for d in domains().values()):
        for line in local_cdc.start(project.settings):
            say(line)
    sources = {name: d.demo.live(project.settings, seed) if d.demo.live else d.demo.source(seed, now)
               for name, d in domains().items()}  # fmt: skip
    late: Counter = Counter()
    for wave in (1, 2):
        for name, d in domains().items():
            n = d.demo.events(events) if wave == 1 else max(d.demo.events(events) // 3, 100)
            if d.demo.live:
                say(f"wave {wave}: {name:<11} {sources[name].wave(n)}")
                continue
            if d.demo.before_wave:
                d.demo.before_wave(sources[name], wave)
            tally = publish(sources[name].events(), KafkaSink(project.settings.kafka, project.topic(name), Tally()), count=n)
            say(f"wave {wave}: {name:<11} {tally.summary()}")
        started = time.monotonic()
        result = runner.run(spark, project, names, once=True)
        late.update({q: m.late_rows_dropped for q, m in result.queries.items()})
        wave_late = sum(m.late_rows_dropped for m in result.queries.values())
        say(f"wave {wave}: all pipelines ran in {time.monotonic() - started:.0f}s; "
            f"{wave_late} late rows left out of gold\n")  # fmt: skip
    read = lambda table: spark.read.format("delta").load(project.table(table).path)  # noqa: E731
    out = {"tables": _table_counts(spark, project, names, say)}
    for name, d in domains().items():
        say(f"\n== {name}")
        mine = {q: n for q, n in late.items() if q.startswith(f"{name}.")}
        out[name] = d.demo.summary(DemoRun(read, say, sources[name], mine))
    return out


def _table_counts(spark: SparkSession, project: Project, names: list[str], say: Say) -> dict:
    counts = {}
    say("rows per table:")
    for name in names:
        for t in project.pipeline(name).layout.tables:
            counts[t.name] = spark.read.format("delta").load(t.path).count()
            say(f"  {name:<11} {t.layer:<10} {t.name:<36} {counts[t.name]:>8}")
    return counts
