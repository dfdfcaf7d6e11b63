"""Clickstream gold aggregates: revenue and activity per minute, sessions.

Each function takes the silver events (with a watermark on `event_time` when streaming) and returns the
rows of one gold table; the engine upserts them by the table's key so open windows update in place.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.engine.gold.sessions import BUCKETS, sessionize

REVENUE = "decimal(38,4)"


def _window_columns() -> list:
    return [F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end")]


def revenue_per_minute(events: DataFrame) -> DataFrame:
    """Purchases per minute, category and currency: orders, units, revenue = sum(price x quantity), exact."""
    purchases = events.where(F.col("event_type") == "purchase")
    agg = purchases.groupBy(F.window("event_time", "1 minute"), "category", "currency").agg(
        F.count(F.lit(1)).alias("orders"),
        F.sum("quantity").alias("units"),
        F.sum(F.col("price") * F.col("quantity")).cast(REVENUE).alias("revenue"),
    )
    return agg.select(*_window_columns(), "category", "currency", "orders", "units", "revenue")


def activity_per_minute(events: DataFrame) -> DataFrame:
    """Events and distinct users per minute and event type. `users` is exact (a set per window in state)."""
    agg = events.groupBy(F.window("event_time", "1 minute"), "event_type").agg(
        F.count(F.lit(1)).alias("events"),
        F.size(F.collect_set("user_id")).cast("long").alias("users"),
    )
    return agg.select(*_window_columns(), "event_type", "events", "users")


def sessions(events: DataFrame, gap: str = "30 minutes", buckets: int | str = BUCKETS, state: str = "pandas") -> DataFrame:
    """One row per session: events of a session_id with no gap of `gap` or more between them. `state`: who keeps the
    open sessions, `pandas` (in `buckets` groups of session ids) or `jvm` (per session id, lakepipe's JVM function);
    both are part of the checkpoint (`pipelines.engine.gold.sessions`)."""
    return sessionize(events, gap, buckets, state)
