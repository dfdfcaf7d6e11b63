"""Change data capture: an entity's state (SCD type 1) and history (SCD type 2) from change events.

Both are pure batch functions over all the change events of some customers (the engine's rebuild mode calls
them with every change of the customers a micro-batch touched). Changes are ordered by their source position
(`lsn`), never by arrival, so a late or re-sent change gives exactly the result of applying the changes in
source order; recomputing from the full change log makes replays and restarts change nothing.

The change events are silver rows of a change contract: `op` (c, u, d, r), `lsn` (the source position),
`change_time`, the entity's key (`key`, default customer_id) and its fields; the outputs keep every field of
the contract besides the envelope's, in contract order.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

LIVE_OPS = ("c", "u", "r")  # a delete ends a customer's current version and opens none
ENVELOPE = ("op", "lsn", "change_time")
SILVER_COLUMNS = ("extra", "topic", "partition", "offset", "kafka_timestamp", "payload_hash", "warnings", "silver_time",
                  "event_date")  # fmt: skip


def entity_fields(changes: DataFrame) -> list[str]:
    """The entity's own columns of change events: all but the envelope's and silver's bookkeeping."""
    return [c for c in changes.columns if c not in ENVELOPE and c not in SILVER_COLUMNS]


def scd1_current(changes: DataFrame, key: str = "customer_id") -> DataFrame:
    """The current state of each entity: its change with the highest lsn, unless that is a delete."""
    latest = Window.partitionBy(key).orderBy(F.col("lsn").desc())
    ranked = changes.withColumn("_rank", F.row_number().over(latest))
    current = ranked.where((F.col("_rank") == 1) & F.col("op").isin(*LIVE_OPS))
    return current.select(*entity_fields(changes), "lsn", F.col("change_time").alias("last_change_time"))


def scd2_history(changes: DataFrame, key: str = "customer_id") -> DataFrame:
    """One row per version of each customer: valid from its change until the next change (any op).

    The version opened by the last change of a live customer is current (`valid_to` null); a deleted
    customer has no current version.
    """
    in_order = Window.partitionBy(key).orderBy("lsn")
    versions = changes.withColumn("valid_to", F.lead("change_time").over(in_order)).where(F.col("op").isin(*LIVE_OPS))
    return versions.select(
        *entity_fields(changes),
        F.col("change_time").alias("valid_from"),
        "valid_to",
        F.col("valid_to").isNull().alias("is_current"),
        "lsn",
        "op",
    )
