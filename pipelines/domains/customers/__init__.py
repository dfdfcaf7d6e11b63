"""Change data capture of the shop's customers: change envelopes (simulator.py), revenue per tier (gold.py).

The SCD1 and SCD2 tables are built by the engine's generic change-data-capture outputs (pipelines.engine.cdc).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import functions as F

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator

FAULTS = {
    "duplicates": "exact re-sends",
    "malformed": "invalid JSON, wrong types, missing fields, out of range, not in set",
    "out_of_order": "events sent after later ones",
}


def simulator(o: SimulatorOptions) -> CdcGenerator:
    faults = CdcFaults(exact_duplicate=o.rate("duplicates"), out_of_order=o.rate("out_of_order"), malformed=o.rate("malformed"))
    return CdcGenerator(seed=o.seed, start=o.start, faults=faults)


def demo_source(seed: int, now: dt.datetime) -> CdcGenerator:
    faults = CdcFaults(exact_duplicate=0.03, out_of_order=0.05, malformed=0.02)
    return CdcGenerator(seed=seed, start=now - dt.timedelta(hours=3), customers=500, changes_per_hour=300, faults=faults)


def demo_events(n: int) -> int:
    return 500 + n // 6  # every customer is created first


def summary(run: DemoRun) -> dict:
    live = run.read("customers").count()
    versions = run.read("customers_history").count()
    tiers = run.read("customers").groupBy("tier").count().orderBy(F.desc("count")).collect()
    by_tier = ", ".join(f"{r.tier} {r['count']}" for r in tiers)
    run.say(f"  live customers {live} ({by_tier}); history versions {versions}")
    revenue = run.read("revenue_per_tier_per_hour").groupBy("tier").agg(
        F.sum("orders").alias("orders")
    ).orderBy(F.desc("orders")).collect()  # fmt: skip
    run.say("  clickstream orders by tier at purchase time: " + ", ".join(f"{r.tier} {r.orders}" for r in revenue))
    run.say("  quarantine: " + run.quarantine_reasons("customer_changes_quarantine"))
    return {"live": live, "versions": versions}


DOMAIN = Domain(
    pipeline="customers",
    faults=FAULTS,
    simulator=simulator,
    demo=Demo(source=demo_source, summary=summary, events=demo_events),
)
