"""`lakepipe demo`: simulate all four domains with faults, run every pipeline, and summarise each domain.

Two waves, each followed by one `--once` run of all pipelines in the same Spark session. The second wave
brings late clickstream events (older than the watermark: they reach silver but are left out of gold),
changes of customers held back from the first wave (applied in source order all the same), more fraud and
more sensor trouble.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.platform import kafka_admin
from pipelines.engine import runner
from pipelines.model.config import Settings
from pipelines.simulators.base import KafkaSink, Tally, publish
from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.domains.iot.simulator import IotFaults, IotGenerator
from pipelines.domains.payments.simulator import PaymentFaults, PaymentsGenerator, score_alerts

PIPELINES = ("clickstream", "iot", "payments", "customers")
CLICKS = (
    FaultRates(exact_duplicate=0.03, conflicting_duplicate=0.02, malformed=0.05, out_of_order=0.05),
    FaultRates(exact_duplicate=0.02, malformed=0.03, late=0.05),
)
Say = Callable[[str], None]


def reset(settings: Settings) -> None:
    """Start the demo from scratch: its topics and its lake folder (only those) are removed."""
    for name in PIPELINES:
        kafka_admin.delete_topic(settings.kafka, runner.topic_of(settings, name))
    lake = Path(settings.lake_root)
    if lake.exists():
        shutil.rmtree(lake)


def run_demo(spark: SparkSession, settings: Settings, events: int = 3000, say: Say = print) -> dict:
    now = dt.datetime.now(dt.UTC)
    seed = int(time.time())
    gens = {
        "clickstream": ClickstreamGenerator(seed=seed, start=now - dt.timedelta(hours=2)),
        "iot": IotGenerator(seed=seed, start=now - dt.timedelta(hours=2), devices=50, sites=5, interval=30,
                            silence=(10 * 60, 40 * 60),
                            faults=IotFaults(exact_duplicate=0.02, malformed=0.03, late=0.01, spike=0.005,
                                             stuck=0.002, dropout=0.003)),
        "payments": PaymentsGenerator(seed=seed, start=now - dt.timedelta(hours=2), accounts=300,
                                      txns_per_account_hour=3,
                                      faults=PaymentFaults(exact_duplicate=0.02, malformed=0.02, fraud=0.02)),
        "customers": CdcGenerator(seed=seed, start=now - dt.timedelta(hours=3), customers=500, changes_per_hour=300,
                                  faults=CdcFaults(exact_duplicate=0.03, out_of_order=0.05, malformed=0.02)),
    }  # fmt: skip
    counts = {"clickstream": events, "iot": events, "payments": events, "customers": 500 + events // 6}
    late = 0
    for wave in (1, 2):
        gens["clickstream"].faults = CLICKS[wave - 1]
        for name, gen in gens.items():
            n = counts[name] if wave == 1 else max(counts[name] // 3, 100)
            tally = publish(gen.events(), KafkaSink(settings.kafka, runner.topic_of(settings, name), Tally()), count=n)
            say(f"wave {wave}: {name:<11} {tally.summary()}")
        started = time.monotonic()
        result = runner.run(spark, settings, list(PIPELINES), once=True)
        wave_late = result.queries["clickstream.gold.clickstream_sessions"].late_rows_dropped
        late += wave_late
        say(f"wave {wave}: all pipelines ran in {time.monotonic() - started:.0f}s; "
            f"{wave_late} late clickstream events left out of gold\n")  # fmt: skip
    read = lambda name, table: spark.read.format("delta").load(_path(settings, name, table))  # noqa: E731
    out = {"tables": _table_counts(spark, settings, say)}
    out["clickstream"] = _clickstream(read, say, late)
    out["iot"] = _iot(read, say, gens["iot"].ground_truth())
    out["payments"] = _payments(read, say, gens["payments"].ground_truth())
    out["customers"] = _customers(read, say)
    return out


def _path(settings: Settings, pipeline: str, table: str) -> str:
    return runner.load_pipeline(settings, pipeline).layout.table(table).path


def _table_counts(spark: SparkSession, settings: Settings, say: Say) -> dict:
    counts = {}
    say("rows per table:")
    for name in PIPELINES:
        for t in runner.load_pipeline(settings, name).layout.tables:
            counts[t.name] = spark.read.format("delta").load(t.path).count()
            say(f"  {name:<11} {t.layer:<10} {t.name:<36} {counts[t.name]:>8}")
    return counts


def _reasons(quarantine: DataFrame) -> list[str]:
    rows = quarantine.select(F.explode("reasons").alias("r")).groupBy("r").count().orderBy(F.desc("count")).collect()
    return [f"{r.r} {r['count']}" for r in rows]


def _clickstream(read: Callable[[str, str], DataFrame], say: Say, late: int) -> dict:
    say("\n== clickstream")
    revenue = read("clickstream", "clickstream_revenue_per_minute").groupBy("currency").agg(
        F.sum("revenue").alias("revenue"), F.sum("orders").alias("orders")
    ).orderBy(F.desc("orders")).collect()  # fmt: skip
    say("  revenue by currency: " + ", ".join(f"{r.currency} {r.revenue:,.2f} ({r.orders} orders)" for r in revenue))
    s = read("clickstream", "clickstream_sessions").agg(
        F.count("*").alias("n"), F.avg(F.col("converted").cast("int")).alias("conversion")
    ).first()
    dups = read("clickstream", "clickstream_silver_batches").agg(F.sum("exact_duplicates")).first()[0] or 0
    say(f"  sessions {s.n}, conversion {100 * (s.conversion or 0):.1f}%; exact duplicates dropped {dups}; "
        f"late events left out of gold {late}")  # fmt: skip
    say("  quarantine: " + ", ".join(_reasons(read("clickstream", "clickstream_events_quarantine"))))
    return {"sessions": s.n, "late_events": late, "exact_duplicates": dups}


def _iot(read: Callable[[str, str], DataFrame], say: Say, truth: dict) -> dict:
    say("\n== iot")
    hot = read("iot", "iot_site_5min_stats").orderBy(F.desc("temperature_c_p95")).first()
    if hot:
        say(f"  hottest site window: {hot.site_id} at {hot.window_start:%H:%M}, p95 {hot.temperature_c_p95:.1f} C "
            f"over {hot.readings} readings from {hot.devices} devices")  # fmt: skip
    anomalies = Counter(r.rule for r in read("iot", "iot_anomalies").collect())
    silent = read("iot", "iot_silent_devices").count()
    say(f"  anomalies: {anomalies['zscore']} z-score (spikes injected: {len(truth['spikes'])}), "
        f"{anomalies['stuck']} stuck sensors (injected: {len(truth['stuck_runs'])})")  # fmt: skip
    say(f"  silent devices now: {silent} (dropouts injected: {len(truth['silences'])}; a device counts once "
        "its silence is 10 minutes old at the watermark)")  # fmt: skip
    say("  quarantine: " + ", ".join(_reasons(read("iot", "iot_readings_quarantine"))))
    return {"anomalies": dict(anomalies), "silent_devices": silent}


def _payments(read: Callable[[str, str], DataFrame], say: Say, truth: dict) -> dict:
    say("\n== payments")
    alerts = [r.asDict() for r in read("payments", "payments_fraud_alerts").collect()]
    score = score_alerts(alerts, truth["incidents"])
    say(f"  fraud alerts {score['alerts']}, incidents injected {score['incidents']}: "
        f"precision {score['precision']:.2f}, recall {score['recall']:.2f}")  # fmt: skip
    for rule, r in score["per_rule"].items():
        say(f"    {rule:<18} alerts {r['alerts']:>4} (right {r['right']}), incidents {r['incidents']:>4} (found {r['found']})")
    say("  quarantine: " + ", ".join(_reasons(read("payments", "payments_transactions_quarantine"))))
    return score


def _customers(read: Callable[[str, str], DataFrame], say: Say) -> dict:
    say("\n== customers (CDC)")
    live = read("customers", "customers").count()
    history = read("customers", "customers_history")
    versions = history.count()
    tiers = read("customers", "customers").groupBy("tier").count().orderBy(F.desc("count")).collect()
    by_tier = ", ".join(f"{r.tier} {r['count']}" for r in tiers)
    say(f"  live customers {live} ({by_tier}); history versions {versions}")
    revenue = read("customers", "revenue_per_tier_per_hour").groupBy("tier").agg(
        F.sum("orders").alias("orders")
    ).orderBy(F.desc("orders")).collect()  # fmt: skip
    say("  clickstream orders by tier at purchase time: " + ", ".join(f"{r.tier} {r.orders}" for r in revenue))
    say("  quarantine: " + ", ".join(_reasons(read("customers", "customer_changes_quarantine"))))
    return {"live": live, "versions": versions}
