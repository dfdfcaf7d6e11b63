"""Orders with the customer's tier at order time: the join of two change-data-capture streams.

A rebuild output keyed by order_id (see `pipelines.engine.gold.rebuild`): called with every change of the orders
a micro-batch touched and the customers' SCD2 history, it recomputes those orders. The tier "at order time" is
the customer's version committed at or before the order (by log position: PostgreSQL has one log for every
table, so LSNs of customers and orders compare exactly, even within one transaction). An order whose
customer has no such version in the history yet counts under tier `unknown` until the order changes again.
Revenue per tier is `SELECT tier, currency, sum(amount) ... GROUP BY tier, currency` over this table.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from pipelines.engine.cdc import scd1_current

UNKNOWN_TIER = "unknown"
PLACED = ("c", "r")  # the changes that create an order (an insert, or a snapshot read)


def orders_by_tier(changes: DataFrame, history: DataFrame) -> DataFrame:
    """One row per live order: its current state and the tier of its customer when it was placed."""
    current = scd1_current(changes, key="order_id")
    placed = changes.groupBy("order_id").agg(
        F.coalesce(F.max(F.when(F.col("op").isin(*PLACED), F.col("lsn"))), F.min("lsn")).alias("placed_lsn")
    )
    next_version = Window.partitionBy("customer_id").orderBy("lsn")
    versions = history.select(
        "customer_id", "tier", F.col("lsn").alias("from_lsn"), F.lead("lsn").over(next_version).alias("to_lsn")
    ).alias("v")
    o = current.join(placed, "order_id").alias("o")
    at_order_time = (
        (F.col("o.customer_id") == F.col("v.customer_id"))
        & (F.col("o.placed_lsn") >= F.col("v.from_lsn"))
        & (F.col("v.to_lsn").isNull() | (F.col("o.placed_lsn") < F.col("v.to_lsn")))
    )
    return o.join(versions, at_order_time, "left").select(
        "o.order_id",
        "o.customer_id",
        F.coalesce(F.col("v.tier"), F.lit(UNKNOWN_TIER)).alias("tier"),
        "o.amount",
        "o.currency",
        "o.ordered_at",
        F.to_date("o.ordered_at").alias("order_date"),
        "o.placed_lsn",
        F.col("o.lsn").alias("last_lsn"),
    )
