"""Change data capture of the shop's customers: change envelopes (simulator.py), revenue per tier (gold.py), and
the demo's live source, transactions on the local shop database (shop.py).

The SCD1 and SCD2 tables are built by the engine's generic change-data-capture outputs (pipelines.engine.cdc).
"""

from __future__ import annotations

from pyspark.sql import functions as F

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.customers.shop import ShopChanges
from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
from pipelines.model.config import Settings

FAULTS = {
    "duplicates": "exact re-sends",
    "malformed": "invalid JSON, wrong types, missing fields, out of range, not in set",
    "out_of_order": "events sent after later ones",
}


def simulator(o: SimulatorOptions) -> CdcGenerator:
    faults = CdcFaults(exact_duplicate=o.rate("duplicates"), out_of_order=o.rate("out_of_order"), malformed=o.rate("malformed"))
    return CdcGenerator(seed=o.seed, start=o.start, faults=faults)


def demo_live(settings: Settings, seed: int) -> ShopChanges:
    return ShopChanges(settings, seed)


def demo_transactions(n: int) -> int:
    return max(n // 10, 50)


def summary(run: DemoRun) -> dict:
    shop: ShopChanges = run.source
    in_database, live = shop.count("customers"), run.read("customers").count()
    versions = run.read("customers_history").count()
    tiers = run.read("customers").groupBy("tier").count().orderBy(F.desc("count")).collect()
    by_tier = ", ".join(f"{r.tier} {r['count']}" for r in tiers)
    same = "equal" if live == in_database else "DIFFERENT"
    run.say(f"  customers in the database {in_database}, in silver {live} ({same}); {by_tier}; history versions {versions}")
    batches = run.read("customers_silver_batches").agg(F.sum("tombstones").alias("t")).first()
    run.say(f"  tombstones skipped {batches.t or 0}; quarantine: " + (run.quarantine_reasons("customer_changes_quarantine") or "empty"))
    return {"live": live, "in_database": in_database, "versions": versions}


DOMAIN = Domain(
    pipeline="customers",
    faults=FAULTS,
    simulator=simulator,
    demo=Demo(source=None, summary=summary, events=demo_transactions, live=demo_live),
)
