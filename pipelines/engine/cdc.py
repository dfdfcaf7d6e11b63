"""Change data capture: customer state (SCD type 1) and history (SCD type 2) from change events.

Both are pure batch functions over all the change events of some customers (the engine's rebuild mode calls
them with every change of the customers a micro-batch touched). Changes are ordered by their source position
(`lsn`), never by arrival, so a late or re-sent change gives exactly the result of applying the changes in
source order; recomputing from the full change log makes replays and restarts change nothing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

CUSTOMER_FIELDS = ("customer_id", "email", "full_name", "tier", "country", "created_at", "updated_at")
LIVE_OPS = ("c", "u", "r")  # a delete ends a customer's current version and opens none


def scd1_current(changes: DataFrame) -> DataFrame:
    """The current state of each customer: its change with the highest lsn, unless that is a delete."""
    latest = Window.partitionBy("customer_id").orderBy(F.col("lsn").desc())
    ranked = changes.withColumn("_rank", F.row_number().over(latest))
    current = ranked.where((F.col("_rank") == 1) & F.col("op").isin(*LIVE_OPS))
    return current.select(*CUSTOMER_FIELDS, "lsn", F.col("change_time").alias("last_change_time"))


def scd2_history(changes: DataFrame) -> DataFrame:
    """One row per version of each customer: valid from its change until the next change (any op).

    The version opened by the last change of a live customer is current (`valid_to` null); a deleted
    customer has no current version.
    """
    in_order = Window.partitionBy("customer_id").orderBy("lsn")
    versions = changes.withColumn("valid_to", F.lead("change_time").over(in_order)).where(F.col("op").isin(*LIVE_OPS))
    return versions.select(
        *CUSTOMER_FIELDS,
        F.col("change_time").alias("valid_from"),
        "valid_to",
        F.col("valid_to").isNull().alias("is_current"),
        "lsn",
        "op",
    )
