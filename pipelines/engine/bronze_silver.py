"""Bronze and silver in one query (`streaming.bronze_with_silver`, the default).

The query reads Kafka with bronze's checkpoint, and each micro-batch is appended to bronze (exactly once, as the
bronze query does) beside silver's parse, checks and classification of the same records (`SilverBatchWriter`):
one query, one read of the records and one micro-batch fewer between Kafka and silver. Bronze's rows become
readable with the batch's bronze commit, which comes before silver's, instead of a bronze micro-batch ahead of it.

Switching modes keeps every record exactly once in silver: which source silver last read is kept in
`<checkpoints>/silver-source.json`.
- To one query: a silver query that read bronze first takes what bronze holds and it has not (AvailableNow), then
  the one query goes on from bronze's Kafka offsets.
- To two queries: silver reads bronze from its newest version, leaving out the records of the topic below the
  Kafka offsets the one query had taken (they are in silver); a last micro-batch of the one query that did not
  finish is refused with a line saying how to finish it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine.bronze import BronzeBatchWriter, kafka_columns, read_kafka_stream
from pipelines.engine.delta_io import hadoop_path, read_text, table_version
from pipelines.errors import ChangeRefusedError
from pipelines.model.config import KafkaSettings

SOURCE_FILE = "silver-source.json"
KAFKA, BRONZE = "kafka", "bronze"
# The most records one micro-batch of the one query takes from Kafka when `kafka.max_offsets_per_trigger` is not
# set: silver keeps a batch in memory (a two-query silver is bounded by `streaming.max_bytes_per_trigger`).
MAX_RECORDS_PER_BATCH = 100_000


def start_bronze_silver(
    spark: SparkSession, kafka: KafkaSettings, topic: str, bronze_path: str, checkpoint: str, trigger: dict, name: str,
    silver: Callable[..., None],
) -> StreamingQuery:  # fmt: skip
    """The one query: Kafka -> bronze's append beside `silver` (a `SilverBatchWriter` with the same checkpoint)."""
    bronze = BronzeBatchWriter(bronze_path, checkpoint)

    def write(batch: DataFrame, batch_id: int) -> None:
        silver(batch, batch_id, alongside=lambda raw: bronze(raw, batch_id))

    records = kafka.max_offsets_per_trigger or MAX_RECORDS_PER_BATCH
    stream = read_kafka_stream(spark, kafka, topic, ride_out="processingTime" in trigger, max_records=records)
    return (
        kafka_columns(stream).writeStream.queryName(name).foreachBatch(write).option("checkpointLocation", checkpoint)
        .trigger(**trigger).start()
    )  # fmt: skip


def read_source(spark: SparkSession, checkpoints: str) -> dict:
    """What silver last read: {"reads": "kafka"}, {"reads": "bronze", "from_version": v, "from_offsets": {...}}, or
    {} (bronze, from the start: the file is written only by a switch)."""
    fs, path = hadoop_path(spark, f"{checkpoints}/{SOURCE_FILE}")
    return json.loads(read_text(spark, path.toString())) if fs.exists(path) else {}


def write_source(spark: SparkSession, checkpoints: str, source: dict) -> None:
    fs, path = hadoop_path(spark, f"{checkpoints}/{SOURCE_FILE}")
    out = fs.create(path, True)
    try:
        out.write(bytearray(json.dumps(source).encode()))
    finally:
        out.close()


def bronze_filter(source: dict) -> Column | None:
    """For a two-query silver after the one query: the bronze rows it has not taken (None: all)."""
    offsets = source.get("from_offsets") or {}
    taken = [
        (F.col("topic") == t) & (F.col("partition") == int(p)) & (F.col("offset") < int(o))
        for t, parts in offsets.items() for p, o in parts.items()
    ]  # fmt: skip
    if not taken:
        return None
    done = taken[0]
    for c in taken[1:]:
        done = done | c
    return ~F.coalesce(done, F.lit(False))


def _last_batches(spark: SparkSession, checkpoint: str) -> tuple[int | None, int | None]:
    """(newest batch with offsets, newest committed batch) of a query's checkpoint."""

    def newest(folder: str) -> int | None:
        fs, path = hadoop_path(spark, f"{checkpoint}/{folder}")
        if not fs.exists(path):
            return None
        ids = [int(s.getPath().getName()) for s in fs.listStatus(path) if s.getPath().getName().isdigit()]
        return max(ids, default=None)

    return newest("offsets"), newest("commits")


def _kafka_end_offsets(spark: SparkSession, checkpoint: str, batch: int) -> dict:
    """{topic: {partition: offset}} where batch `batch` of a Kafka query ended."""
    lines = read_text(spark, f"{checkpoint}/offsets/{batch}").splitlines()
    return json.loads(lines[2])


def to_two_queries(spark: SparkSession, pipeline: str, checkpoints: str, bronze_checkpoint: str, bronze_path: str) -> dict:
    """Called before a bronze query of two starts: after the one query, silver's old checkpoint is dropped and it reads
    bronze from its newest version on, without the records the one query took. Returns what silver reads now."""
    source = read_source(spark, checkpoints)
    if source.get("reads") != KAFKA:
        return source
    started, committed = _last_batches(spark, bronze_checkpoint)
    if started is not None and started != committed:
        raise ChangeRefusedError(
            f"{pipeline}: its last micro-batch with bronze and silver in one query ({started}) did not finish: finish "
            f"it with `lakepipe run {pipeline} --once` and streaming.bronze_with_silver: true, then switch to false"
        )
    offsets = _kafka_end_offsets(spark, bronze_checkpoint, committed) if committed is not None else {}
    fs, old = hadoop_path(spark, f"{checkpoints}/silver")
    if fs.exists(old):
        fs.delete(old, True)
    source = {"reads": BRONZE, "from_version": table_version(spark, bronze_path), "from_offsets": offsets}
    write_source(spark, checkpoints, source)
    return source


def unfinished_batch(spark: SparkSession, checkpoint: str) -> bool:
    """Whether the query with `checkpoint` began a micro-batch it did not finish."""
    started, committed = _last_batches(spark, checkpoint)
    return started is not None and started != committed


def needs_catch_up(spark: SparkSession, checkpoints: str, bronze_checkpoint: str) -> bool:
    """Whether silver must first take what bronze holds before the one query starts: silver read bronze last, and a
    bronze query wrote some."""
    if read_source(spark, checkpoints).get("reads") == KAFKA:
        return False
    return _last_batches(spark, bronze_checkpoint)[0] is not None


def mark_one_query(spark: SparkSession, checkpoints: str) -> None:
    write_source(spark, checkpoints, {"reads": KAFKA})
