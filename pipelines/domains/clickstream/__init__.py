"""E-commerce clickstream: revenue, activity and sessions per minute (gold.py), the web shop (simulator.py)."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates

FAULTS = {
    "duplicates": "exact re-sends",
    "conflicts": "same event_id, other payload",
    "malformed": "invalid JSON, wrong types, missing fields, out of range, not in set",
    "late": "event_time older than the watermark",
    "out_of_order": "events sent after later ones",
}
DEMO_FAULTS = (  # wave 1, wave 2 (late events: they reach silver but are left out of gold)
    FaultRates(exact_duplicate=0.03, conflicting_duplicate=0.02, malformed=0.05, out_of_order=0.05),
    FaultRates(exact_duplicate=0.02, malformed=0.03, late=0.05),
)


def simulator(o: SimulatorOptions) -> ClickstreamGenerator:
    faults = FaultRates(
        exact_duplicate=o.rate("duplicates"), conflicting_duplicate=o.rate("conflicts"),
        malformed=o.rate("malformed"), late=o.rate("late"), out_of_order=o.rate("out_of_order"),
    )  # fmt: skip
    return ClickstreamGenerator(seed=o.seed, start=o.start, events_per_second=o.events_per_second, faults=faults)


def demo_source(seed: int, now: dt.datetime) -> ClickstreamGenerator:
    return ClickstreamGenerator(seed=seed, start=now - dt.timedelta(hours=2))


def demo_wave(gen: ClickstreamGenerator, wave: int) -> None:
    gen.faults = DEMO_FAULTS[wave - 1]


def summary(run: DemoRun) -> dict:
    late = run.late_rows.get("clickstream.gold.clickstream_sessions", 0)
    revenue = run.read("clickstream_revenue_per_minute").groupBy("currency").agg(
        F.sum("revenue").alias("revenue"), F.sum("orders").alias("orders")
    ).orderBy(F.desc("orders")).collect()  # fmt: skip
    run.say("  revenue by currency: " + ", ".join(f"{r.currency} {r.revenue:,.2f} ({r.orders} orders)" for r in revenue))
    s = run.read("clickstream_sessions").agg(
        F.count("*").alias("n"), F.avg(F.col("converted").cast("int")).alias("conversion")
    ).first()
    dups = run.read("clickstream_silver_batches").agg(F.sum("exact_duplicates")).first()[0] or 0
    run.say(f"  sessions {s.n}, conversion {100 * (s.conversion or 0):.1f}%; exact duplicates dropped {dups}; "
            f"late events left out of gold {late}")  # fmt: skip
    run.say("  quarantine: " + run.quarantine_reasons("clickstream_events_quarantine"))
    return {"sessions": s.n, "late_events": late, "exact_duplicates": dups}


DOMAIN = Domain(
    pipeline="clickstream",
    faults=FAULTS,
    simulator=simulator,
    demo=Demo(source=demo_source, summary=summary, before_wave=demo_wave),
)
