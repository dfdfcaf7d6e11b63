"""Silver: bronze records parsed against the contract, deduplicated, and split from the rejects.

Each micro-batch of bronze is parsed (`pipelines.validation`), then every record gets one outcome:
- `silver`: valid, and the first time its dedup key is seen (silver itself is the dedup state, so a
  re-send is caught whatever its delay, across restarts and replays);
- `exact_duplicate`: the same key with the same payload as the first copy: counted, not stored again;
- `quarantine`: invalid (with every reason), or the same key with a different payload
  (`duplicate_conflict`; the first copy wins: the one already in silver, else the earliest by Kafka
  timestamp, partition and offset).
The three writes of a batch (audit row, quarantine, silver) are idempotent Delta appends keyed by the
query's id and the batch id, so a batch re-run after a crash writes nothing twice.
"""

from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from pipelines.contract import Contract
from pipelines.delta_io import append_once, checkpoint_query_id, ensure_table
from pipelines.layout import PipelineLayout
from pipelines.spec import PipelineSpec
from pipelines.validation import parse_records

SILVER, QUARANTINE, EXACT_DUPLICATE = "silver", "quarantine", "exact_duplicate"
OUTCOME = "_outcome"
LINEAGE = (
    T.StructField("topic", T.StringType()),
    T.StructField("partition", T.IntegerType()),
    T.StructField("offset", T.LongType()),
    T.StructField("kafka_timestamp", T.TimestampType()),
)


def silver_schema(contract: Contract) -> T.StructType:
    return T.StructType(
        [
            *contract.spark_schema.fields,
            T.StructField("extra", T.StringType()),
            *LINEAGE,
            T.StructField("payload_hash", T.StringType()),
            T.StructField("silver_time", T.TimestampType()),
            T.StructField("event_date", T.DateType()),
        ]
    )


def quarantine_schema(contract: Contract, spec: PipelineSpec) -> T.StructType:
    return T.StructType(
        [
            T.StructField(spec.dedup_key, contract.field(spec.dedup_key).spark_type),
            T.StructField("key", T.BinaryType()),
            T.StructField("value", T.BinaryType()),
            *LINEAGE,
            T.StructField("reasons", T.ArrayType(T.StringType())),
            T.StructField("quarantined_at", T.TimestampType()),
            T.StructField("replay_id", T.StringType()),
            T.StructField("replayed_at", T.TimestampType()),
        ]
    )


BATCHES_SCHEMA = T.StructType(
    [
        T.StructField("query_id", T.StringType()),
        T.StructField("batch_id", T.LongType()),
        T.StructField("bronze_records", T.LongType()),
        T.StructField("silver_records", T.LongType()),
        T.StructField("quarantined_records", T.LongType()),
        T.StructField("exact_duplicates", T.LongType()),
        T.StructField("processed_at", T.TimestampType()),
    ]
)


def classify(parsed: DataFrame, existing: DataFrame, dedup_key: str) -> DataFrame:
    """Give each parsed record its outcome (pure).

    `existing` holds the dedup keys and payload hashes already in silver (columns `dedup_key`,
    `payload_hash`). Conflicting duplicates get `reasons = ['duplicate_conflict']`.
    """
    valid = F.size("reasons") == 0
    # Rank the valid copies of each key by arrival; invalid rows get their own partition and no rank use.
    order = Window.partitionBy(dedup_key, valid).orderBy(
        F.col("kafka_timestamp").asc_nulls_last(), "partition", "offset"
    )
    ranked = parsed.withColumn("_rank", F.row_number().over(order)).withColumn(
        "_batch_first_hash", F.first("payload_hash").over(order)
    )
    joined = ranked.join(
        existing.select(dedup_key, F.col("payload_hash").alias("_silver_hash")), dedup_key, "left"
    )
    winner = F.coalesce("_silver_hash", "_batch_first_hash")
    outcome = (
        F.when(~valid, F.lit(QUARANTINE))
        .when((F.col("_rank") == 1) & F.col("_silver_hash").isNull(), F.lit(SILVER))
        .when(F.col("payload_hash") == winner, F.lit(EXACT_DUPLICATE))
        .otherwise(F.lit(QUARANTINE))
    )
    conflict = valid & (outcome == QUARANTINE)
    reasons = F.when(conflict, F.array(F.lit("duplicate_conflict"))).otherwise(F.col("reasons"))
    return joined.withColumn(OUTCOME, outcome).withColumn("reasons", reasons).select(*parsed.columns, OUTCOME)


def to_silver_rows(classified: DataFrame, contract: Contract, spec: PipelineSpec) -> DataFrame:
    rows = classified.where(F.col(OUTCOME) == SILVER).withColumn("silver_time", F.current_timestamp())
    rows = rows.withColumn("event_date", F.to_date(spec.event_time))
    return rows.select(*[f.name for f in silver_schema(contract).fields])


def to_quarantine_rows(classified: DataFrame, contract: Contract, spec: PipelineSpec) -> DataFrame:
    rows = classified.where(F.col(OUTCOME) == QUARANTINE).withColumn("quarantined_at", F.current_timestamp())
    rows = rows.withColumn("replay_id", F.lit(None).cast("string")).withColumn(
        "replayed_at", F.lit(None).cast("timestamp")
    )
    return rows.select(*[f.name for f in quarantine_schema(contract, spec).fields])


class SilverBatchWriter:
    """The foreachBatch function of the silver query."""

    def __init__(self, contract: Contract, spec: PipelineSpec, layout: PipelineLayout, checkpoint: str) -> None:
        self.contract = contract
        self.spec = spec
        self.layout = layout
        self.checkpoint = checkpoint
        self._app_id: str | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        spark = batch.sparkSession
        if self._app_id is None:
            self._app_id = f"silver-{checkpoint_query_id(spark, self.checkpoint)}"
        key = self.spec.dedup_key
        existing = spark.read.format("delta").load(self.layout.silver.path).select(key, "payload_hash")
        classified = classify(parse_records(batch, self.contract), existing, key)
        classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            counts = {r[OUTCOME]: r["count"] for r in classified.groupBy(OUTCOME).count().collect()}
            audit = spark.createDataFrame(
                [
                    (
                        self._app_id, batch_id, sum(counts.values()), counts.get(SILVER, 0),
                        counts.get(QUARANTINE, 0), counts.get(EXACT_DUPLICATE, 0),
                    )
                ],  # fmt: skip
                "query_id string, batch_id long, bronze_records long, silver_records long, "
                "quarantined_records long, exact_duplicates long",
            ).withColumn("processed_at", F.current_timestamp())
            append_once(audit, self.layout.batches.path, self._app_id, batch_id)
            quarantined = to_quarantine_rows(classified, self.contract, self.spec)
            append_once(quarantined, self.layout.quarantine.path, self._app_id, batch_id)
            silver = to_silver_rows(classified, self.contract, self.spec)
            append_once(silver, self.layout.silver.path, self._app_id, batch_id)
        finally:
            classified.unpersist()


def ensure_silver_tables(spark: SparkSession, contract: Contract, spec: PipelineSpec, layout: PipelineLayout) -> None:
    ensure_table(spark, layout.silver.path, silver_schema(contract), spec.partition_by)
    ensure_table(spark, layout.quarantine.path, quarantine_schema(contract, spec))
    ensure_table(spark, layout.batches.path, BATCHES_SCHEMA)


def start_silver(
    spark: SparkSession, contract: Contract, spec: PipelineSpec, layout: PipelineLayout, trigger: dict, name: str
) -> StreamingQuery:
    checkpoint = layout.checkpoint("silver")
    return (
        spark.readStream.format("delta")
        .load(layout.bronze.path)
        .writeStream.queryName(name)
        .foreachBatch(SilverBatchWriter(contract, spec, layout, checkpoint))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
