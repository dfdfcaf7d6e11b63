"""Clickstream revenue by customer tier: each purchase joined to the customer's tier at purchase time.

A rebuild output (see `pipelines.engine.gold.rebuild`): called with all the clickstream purchases of the days a
micro-batch touched and the customers' SCD2 history, it recomputes those days. A purchase by a customer
with no version valid at that time (not yet in the history) counts under tier `unknown`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

UNKNOWN_TIER = "unknown"


def revenue_per_tier_per_hour(events: DataFrame, history: DataFrame) -> DataFrame:
    """Per day, hour, tier and currency: orders and revenue = sum(price x quantity), exact."""
    purchases = events.where(F.col("event_type") == "purchase").alias("p")
    versions = history.select("customer_id", "tier", "valid_from", "valid_to").alias("h")
    at_purchase = (
        (F.col("p.user_id") == F.col("h.customer_id"))
        & (F.col("p.event_time") >= F.col("h.valid_from"))
        & (F.col("h.valid_to").isNull() | (F.col("p.event_time") < F.col("h.valid_to")))
    )
    joined = purchases.join(versions, at_purchase, "left")
    agg = joined.groupBy(
        "p.event_date",
        F.date_trunc("hour", "p.event_time").alias("hour_start"),
        F.coalesce(F.col("h.tier"), F.lit(UNKNOWN_TIER)).alias("tier"),
        "p.currency",
    ).agg(
        F.count(F.lit(1)).alias("orders"),
        F.sum(F.col("p.price") * F.col("p.quantity")).cast("decimal(38,4)").alias("revenue"),
    )
    return agg.select("event_date", "hour_start", "tier", "currency", "orders", "revenue")
