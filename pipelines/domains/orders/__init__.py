"""Change data capture of the shop's orders: change envelopes (simulator.py), each order with its customer's
tier at order time (gold.py). The orders' SCD1 table is the engine's generic change-data-capture output."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import functions as F

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.customers.shop import ShopChanges
from pipelines.domains.customers.simulator import CdcFaults
from pipelines.domains.orders.simulator import OrdersGenerator
from pipelines.model.config import Settings

FAULTS = {
    "duplicates": "exact re-sends",
    "malformed": "amounts as numbers, unknown ops, missing order ids",
}


def simulator(o: SimulatorOptions) -> OrdersGenerator:
    return OrdersGenerator(seed=o.seed, start=o.start, faults=CdcFaults(exact_duplicate=o.rate("duplicates"), malformed=o.rate("malformed")))


@dataclass
class OrdersSeen:
    """The orders table of the shop database: the customers' demo transactions change it too."""

    shop: ShopChanges

    def wave(self, n: int) -> str:
        return f"{self.shop.count('orders')} orders in the database (placed, amended and cancelled by the customers' transactions)"

    def count(self, table: str) -> int:
        return self.shop.count(table)


def demo_live(settings: Settings, seed: int) -> OrdersSeen:
    return OrdersSeen(ShopChanges(settings, seed))


def summary(run: DemoRun) -> dict:
    in_database, live = run.source.count("orders"), run.read("orders").count()
    same = "equal" if live == in_database else "DIFFERENT"
    run.say(f"  orders in the database {in_database}, in silver {live} ({same})")
    revenue = run.read("orders_by_tier").groupBy("tier", "currency").agg(F.sum("amount").alias("revenue"), F.count(F.lit(1)).alias("n"))
    rows = revenue.orderBy(F.desc("revenue")).collect()
    run.say("  revenue per tier at order time: " + ", ".join(f"{r.tier} {r.currency} {r.revenue} ({r.n})" for r in rows[:8]))
    run.say("  quarantine: " + (run.quarantine_reasons("order_changes_quarantine") or "empty"))
    return {"live": live, "in_database": in_database}


DOMAIN = Domain(pipeline="orders", faults=FAULTS, simulator=simulator, demo=Demo(source=None, summary=summary, live=demo_live))
