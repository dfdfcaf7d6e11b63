"""Bronze: every Kafka record exactly once, bytes as received, with its Kafka metadata.

Bronze never looks inside a value, so it cannot fail on content: empty, null, invalid UTF-8 and large values
are all stored. Exactly-once comes from the Kafka offsets in the query checkpoint plus an idempotent append
per micro-batch (`delta_io.BatchAppender`, keyed by the query id as Delta's own streaming sink is): a batch
re-run after a crash is recognised by its batch id and not written twice. Delta's sink would do the same but
rebuild the table's state on every commit to look its id up (~0.6 s per micro-batch on 2 cores).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine import batch_time
from pipelines.engine.delta_io import BatchAppender, checkpoint_query_id
from pipelines.model.config import KafkaSettings
from pipelines.platform.kafka_security import java_client_options

BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("kafka_timestamp", T.TimestampType()),
        T.StructField("kafka_timestamp_type", T.IntegerType()),
        T.StructField(
            "headers",
            T.ArrayType(T.StructType([T.StructField("key", T.StringType()), T.StructField("value", T.BinaryType())])),
        ),
        T.StructField("ingestion_time", T.TimestampType()),
        T.StructField("ingestion_date", T.DateType()),
    ]
)
# Not partitioned: a partitioned Delta write sorts each task's rows by the partition column first, which cost
# bronze ~30% of its throughput (make bench: 82k vs 115k records/s on a 500k backlog). Reads by day still skip
# files: Delta keeps min/max statistics of ingestion_time and ingestion_date per file, and a micro-batch's file
# covers seconds. Tables made partitioned by an older lakepipe keep their partitioning (appends follow it).
def kafka_options(kafka: KafkaSettings) -> dict[str, str]:
    """Options of the Spark Kafka source shared by streams and batch reads (backfills)."""
    opts = {
        "kafka.bootstrap.servers": kafka.bootstrap_servers,
        "includeHeaders": "true",
        "failOnDataLoss": str(kafka.fail_on_data_loss).lower(),
    }
    opts.update({f"kafka.{k}": v for k, v in java_client_options(kafka.security).items()})
    opts.update({f"kafka.{k}": v for k, v in kafka.spark_options.items()})
    return opts


# A continuous run waits out a broker that stops answering however long it takes (the runner says so once, and
# again when it answers): Spark's Kafka source would otherwise fail the query after 3 offset requests of up to
# a minute each. A `--once` run keeps Spark's bound.
RIDE_OUT = {"fetchOffset.numRetries": str(2**31 - 1), "fetchOffset.retryIntervalMs": "5000"}


def read_kafka_stream(
    spark: SparkSession, kafka: KafkaSettings, topic: str, ride_out: bool = False, max_records: int | None = None
) -> DataFrame:
    """`topic` as a stream; at most `max_records` (else `kafka.max_offsets_per_trigger`) records per micro-batch."""
    reader = spark.readStream.format("kafka").options(**kafka_options(kafka), **(RIDE_OUT if ride_out else {}))
    reader = reader.option("subscribe", topic).option("startingOffsets", kafka.starting_offsets)
    if max_records or kafka.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_records or kafka.max_offsets_per_trigger))
    return reader.load()


def kafka_columns(kafka_rows: DataFrame) -> DataFrame:
    """Kafka source rows to the bronze layout but its ingestion time and date (pure)."""
    return kafka_rows.select(
        "key",
        "value",
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("timestampType").alias("kafka_timestamp_type"),
        "headers",
    )


def stamp_ingestion(rows: DataFrame, at: dt.datetime) -> DataFrame:
    """`kafka_columns` rows with their ingestion time `at` and its date: the bronze layout (pure)."""
    return batch_time.stamp(rows, at, "ingestion_time", "ingestion_date")


def to_bronze(kafka_rows: DataFrame, at: dt.datetime) -> DataFrame:
    """Kafka source rows to the bronze layout, ingested at `at` (pure)."""
    return stamp_ingestion(kafka_columns(kafka_rows), at)


class BronzeBatchWriter:
    """The foreachBatch function of the bronze query: one exactly-once append per micro-batch."""

    def __init__(self, path: str, checkpoint: str) -> None:
        self.path, self.checkpoint = path, checkpoint
        self._appender: BatchAppender | None = None
        self._query_id = ""

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        """Append `batch` (`kafka_columns` rows), stamped with the time of this call (the batch's ingestion time:
        as data, so that the plan's generated code is the same every micro-batch, see `batch_time`)."""
        batch = stamp_ingestion(batch, batch_time.now())
        if self._appender is None:
            self._query_id = checkpoint_query_id(batch.sparkSession, self.checkpoint)
            self._appender = BatchAppender(batch.sparkSession, self.checkpoint)
        # the query id alone, as Delta's streaming sink names its transactions (tables it wrote stay exact)
        self._appender.append(batch, self.path, self._query_id, batch_id)


def start_bronze(
    spark: SparkSession, kafka: KafkaSettings, topic: str, path: str, checkpoint: str, trigger: dict, name: str
) -> StreamingQuery:
    return (
        kafka_columns(read_kafka_stream(spark, kafka, topic, ride_out="processingTime" in trigger))
        .writeStream.queryName(name)
        .foreachBatch(BronzeBatchWriter(path, checkpoint))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )
