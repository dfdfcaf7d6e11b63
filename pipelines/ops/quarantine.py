"""Quarantine: list what is there, and replay it after a contract or a rule was fixed.

`replay` re-validates the selected quarantined rows (not yet replayed) against the current contract and
suite. Rows that now pass enter silver (and so gold) exactly once and are marked with the replay's id; rows
that still fail stay, with their new reasons. The replay id is derived from the selection, the contract and the suite; the silver append
is idempotent for that id (Delta txnAppId), and silver deduplicates by key anyway, so replaying the same
selection twice, or again after a replay was killed half-way, adds nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.engine.dedup import DEDUP_HASH
from pipelines.engine.delta_io import append_once
from pipelines.engine.gold.outputs import inline_rebuilds
from pipelines.engine.pii import Privacy
from pipelines.engine.silver import (
    DROPPED_OUTCOME,
    EXACT_DUPLICATE,
    OUTCOME,
    QUARANTINE,
    SILVER,
    classify_validated,
    refresh_inline,
    to_silver_rows,
    validate,
)  # fmt: skip
from pipelines.quality.row_rules import DROPPED, FAILED

RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "kafka_timestamp")
COORDINATES = ("topic", "partition", "offset")


@dataclass(frozen=True)
class ReplayResult:
    replay_id: str | None
    selected: int
    to_silver: int
    already_in_silver: int
    still_failing: int


def pending(spark: SparkSession, quarantine_path: str, reason: str | None = None, since: str | None = None) -> DataFrame:
    """Quarantined rows not replayed yet, optionally with `reason` among their reasons, quarantined since `since`."""
    rows = spark.read.format("delta").load(quarantine_path).where(F.col("replay_id").isNull())
    if reason:
        rows = rows.where(F.array_contains("reasons", reason))
    if since:
        rows = rows.where(F.col("quarantined_at") >= F.lit(since).cast("timestamp"))
    return rows


def reason_counts(rows: DataFrame) -> list[tuple[str, int]]:
    counts = rows.select(F.explode("reasons").alias("reason")).groupBy("reason").count()
    return [(r.reason, r["count"]) for r in counts.orderBy(F.desc("count"), "reason").collect()]


def replay(
    spark: SparkSession, pipeline, reason: str | None = None, since: str | None = None, privacy: Privacy = Privacy()  # noqa: ANN001
) -> ReplayResult:  # fmt: skip
    """Replay the selected quarantined rows of `pipeline` (a `Pipeline` of the project). With `privacy` protecting
    quarantine's pii, the raw records are read from bronze by their Kafka coordinates."""
    layout, spec = pipeline.layout, pipeline.spec
    selected = pending(spark, layout.quarantine.path, reason, since).select(*RAW_COLUMNS)
    if privacy.redacts_quarantine:
        raw = spark.read.format("delta").load(layout.bronze.path).select(*RAW_COLUMNS[:2], *COORDINATES)
        selected = selected.drop(*RAW_COLUMNS[:2]).join(raw, list(COORDINATES)).select(*RAW_COLUMNS)
    selected = selected.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        digest = selected.agg(
            F.count(F.lit(1)).alias("n"),
            F.sha2(F.concat_ws(",", F.sort_array(F.collect_list(F.concat_ws("/", "topic", "partition", "offset")))), 256).alias("h"),
        ).first()  # fmt: skip
        if digest.n == 0:
            return ReplayResult(None, 0, 0, 0, 0)
        replay_id = f"replay-{_replay_digest(digest.h, pipeline)}"
        silver_table = spark.read.format("delta").load(layout.silver.path)
        existing = silver_table.select(*spec.dedup_keys, "payload_hash")
        classified = classify_validated(validate(selected, pipeline.contract, pipeline.suite), existing, spec.dedup_keys)
        failed = F.concat(F.col("reasons"), F.col(DROPPED), F.col(FAILED))
        classified = classified.withColumn("reasons", failed).withColumn(
            OUTCOME, F.when(F.col(OUTCOME).isin(DROPPED_OUTCOME) | (F.size(FAILED) > 0), F.lit(QUARANTINE)).otherwise(F.col(OUTCOME))
        ).persist(StorageLevel.MEMORY_AND_DISK)  # fmt: skip
        try:
            counts = {r[OUTCOME]: r["count"] for r in classified.groupBy(OUTCOME).count().collect()}
            if counts.get(SILVER):
                hashed = DEDUP_HASH in silver_table.columns
                silver = privacy.silver(to_silver_rows(classified, pipeline.contract, spec, hashed=hashed))
                append_once(silver, layout.silver.path, replay_id, 0, merge_schema=True)
            refresh_inline(spark, inline_rebuilds(pipeline), privacy.silver(classified))  # the SCD tables, which no query refreshes
            mark(spark, layout.quarantine.path, classified, replay_id)
        finally:
            classified.unpersist()
        return ReplayResult(replay_id, digest.n, counts.get(SILVER, 0), counts.get(EXACT_DUPLICATE, 0), counts.get(QUARANTINE, 0))
    finally:
        selected.unpersist()


def _replay_digest(selection: str, pipeline) -> str:  # noqa: ANN001
    """Same rows under the same contract and suite: the same replay (so a re-run after a kill is recognised);
    after a fix of the contract or the suite, a new one."""
    h = hashlib.sha256(selection.encode())
    h.update(repr(pipeline.contract).encode())
    h.update(repr(pipeline.suite).encode())
    return h.hexdigest()[:16]


def mark(spark: SparkSession, quarantine_path: str, classified: DataFrame, replay_id: str) -> None:
    """One MERGE: rows now in silver get the replay id; rows still failing get their new reasons."""
    source = classified.select("topic", "partition", "offset", "reasons", OUTCOME)
    on = "t.topic = s.topic AND t.partition = s.partition AND t.offset = s.offset AND t.replay_id IS NULL"
    (
        DeltaTable.forPath(spark, quarantine_path).alias("t")
        .merge(source.alias("s"), on)
        .whenMatchedUpdate(
            condition=f"s.{OUTCOME} IN ('{SILVER}', '{EXACT_DUPLICATE}')",
            set={"replay_id": F.lit(replay_id), "replayed_at": F.current_timestamp()},
        )
        .whenMatchedUpdate(set={"reasons": F.col("s.reasons")})
        .execute()
    )  # fmt: skip
