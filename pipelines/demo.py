"""`lakepipe demo`: simulate clickstream traffic with faults, run the pipeline, and summarise the tables.

Two waves, each followed by a `--once` run in the same Spark session: the second wave brings late events
(older than the watermark), which reach silver but are left out of gold.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines import kafka_admin, runner
from pipelines.config import Settings
from pipelines.simulators.base import KafkaSink, Tally, publish
from pipelines.simulators.clickstream import ClickstreamGenerator, FaultRates

WAVE1 = FaultRates(exact_duplicate=0.03, conflicting_duplicate=0.02, malformed=0.05, out_of_order=0.05)
WAVE2 = FaultRates(exact_duplicate=0.02, malformed=0.03, late=0.05)


def reset(settings: Settings) -> None:
    """Start the demo from scratch: its topic and its lake folder (only those) are removed."""
    kafka_admin.delete_topic(settings.kafka, runner.topic_of(settings, "clickstream"))
    lake = Path(settings.lake_root)
    if lake.exists():
        shutil.rmtree(lake)


def run_demo(spark: SparkSession, settings: Settings, events: int = 3000, say: Callable[[str], None] = print) -> dict:
    topic = runner.topic_of(settings, "clickstream")
    kafka_admin.ensure_topic(settings.kafka, topic)
    gen = ClickstreamGenerator(seed=int(time.time()), start=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    late_total = 0
    for wave, (faults, n) in enumerate(((WAVE1, events), (WAVE2, max(events // 3, 100))), start=1):
        gen.faults = faults
        tally = publish(gen.events(), KafkaSink(settings.kafka, topic, Tally()), count=n)
        say(f"wave {wave}: {tally.summary()}")
        started = time.monotonic()
        result = runner.run(spark, settings, ["clickstream"], once=True)
        late = result.queries["clickstream.gold.clickstream_sessions"].late_rows_dropped
        late_total += late
        say(f"wave {wave}: pipeline run took {time.monotonic() - started:.0f}s; {late} late events left out of gold")
    return summarize(spark, settings, say, late_total)


def summarize(spark: SparkSession, settings: Settings, say: Callable[[str], None], late: int) -> dict:
    p = runner.load_pipeline(settings, "clickstream")
    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    counts = {t.name: read(t).count() for t in p.layout.tables}
    say("\nrows per table:")
    for t in p.layout.tables:
        say(f"  {t.layer:<10} {t.name:<34} {counts[t.name]:>8}")

    revenue = read(p.layout.gold_table("clickstream_revenue_per_minute")).groupBy("currency", "category").agg(
        F.sum("revenue").alias("revenue"), F.sum("orders").alias("orders")
    ).collect()
    by_currency: dict[str, list] = {}
    for r in revenue:
        by_currency.setdefault(r.currency, []).append(r)
    busiest = sorted(by_currency, key=lambda c: -sum(r.orders for r in by_currency[c]))[:2]
    say("\ntop categories by revenue, in the two currencies with most orders:")
    for currency in busiest:
        for r in sorted(by_currency[currency], key=lambda r: -r.revenue)[:3]:
            say(f"  {currency}  {r.category:<12} {r.revenue:>12,.2f}  ({r.orders} orders)")

    reasons = (
        read(p.layout.quarantine).select(F.explode("reasons").alias("reason")).groupBy("reason").count()
        .orderBy(F.desc("count")).collect()
    )  # fmt: skip
    say("\nquarantine reasons:")
    for r in reasons:
        say(f"  {r.reason:<26} {r['count']:>6}")

    sessions = read(p.layout.gold_table("clickstream_sessions")).agg(
        F.count("*").alias("n"), F.avg(F.col("converted").cast("int")).alias("conversion")
    ).first()
    audit = read(p.layout.batches).agg(F.sum("exact_duplicates")).first()[0] or 0
    say(f"\nsessions: {sessions.n}, conversion {100 * (sessions.conversion or 0):.1f}%")
    say(f"exact duplicates dropped: {audit}; late events left out of gold: {late}")
    return {"tables": counts, "late_events": late, "exact_duplicates": audit}
