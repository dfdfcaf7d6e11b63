"""Bronze backfill: a Kafka range into bronze as one batch, exactly once by Kafka position.

The range is offsets per partition, or a Kafka timestamp range (`offsets_for_times`). Records already in bronze
(same topic, partition and offset) are not written again: the load is one insert-only MERGE on the Kafka
position, so running it twice, or again after it was killed, writes each record once. Offsets requested but
no longer in the topic (deleted by retention) are a gap, reported with its size; the backfill writes nothing
unless told to load the rest anyway (`allow_gaps`). Offsets from where the bronze stream started (its
checkpoint's first source offsets) on are the stream's: the range is cut there, so the two never write one
record twice, whichever runs first.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.backfill import audit
from pipelines.engine import batch_time
from pipelines.engine.bronze import kafka_options, to_bronze
from pipelines.engine.delta_io import retry_on_conflict, stream_start_offsets
from pipelines.errors import LakepipeError
from pipelines.model.project import Project
from pipelines.platform import kafka_admin


class GapError(LakepipeError):
    pass


@dataclass(frozen=True)
class PartitionPlan:
    partition: int
    start: int  # requested, inclusive
    end: int  # requested, exclusive
    low: int  # the topic's first offset still kept

    @property
    def read_from(self) -> int:
        return max(self.start, self.low)

    @property
    def to_read(self) -> int:
        return max(0, self.end - self.read_from)

    @property
    def gap(self) -> int:
        return max(0, min(self.low, self.end) - self.start)


def parse_offsets(text: str) -> dict[int, tuple[int, int]]:
    """'0:100-200,1:0-50' -> {0: (100, 200), 1: (0, 50)} (end exclusive)."""
    out = {}
    for part in text.split(","):
        try:
            p, rng = part.strip().split(":")
            start, end = rng.split("-")
            out[int(p)] = (int(start), int(end))
        except ValueError:
            raise LakepipeError(f"--offsets '{part}' is not partition:start-end (e.g. 0:100-200,1:0-50)") from None
        if out[int(p)][0] > out[int(p)][1]:
            raise LakepipeError(f"--offsets '{part}': start is after end")
    return out


def plan(project: Project, pipeline: str, offsets: dict[int, tuple[int, int]] | None = None,
         start_ms: int | None = None, end_ms: int | None = None) -> list[PartitionPlan]:  # fmt: skip
    """What to read per partition: offsets as given, or those of the Kafka timestamps [start_ms, end_ms)."""
    kafka, topic = project.settings.kafka, project.topic(pipeline)
    kafka_admin.require_topic(kafka, topic)
    consumer = Consumer(kafka_admin.client_config(kafka, **{"group.id": "lakepipe-backfill", "enable.auto.commit": False}))
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
        if offsets is None:
            wanted = {}
            for p in partitions:
                low, high = marks[p]
                first = _offset_at(consumer, topic, p, start_ms, high) if start_ms is not None else low
                last = _offset_at(consumer, topic, p, end_ms, high) if end_ms is not None else high
                # a timestamp before every kept record: the expired records may be in the range
                wanted[p] = (0 if first == low and start_ms is not None else first, last)
        else:
            unknown = sorted(set(offsets) - set(partitions))
            if unknown:
                raise LakepipeError(f"topic {topic} has no partition {', '.join(map(str, unknown))} (it has {len(partitions)})")
            wanted = {p: (s, min(e, marks[p][1])) for p, (s, e) in offsets.items()}
    finally:
        consumer.close()
    return [PartitionPlan(p, s, e, marks[p][0]) for p, (s, e) in sorted(wanted.items())]


def _offset_at(consumer: Consumer, topic: str, partition: int, ms: int, high: int) -> int:
    (tp,) = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)
    return high if tp.offset < 0 else tp.offset


def chunks(parts: list[PartitionPlan], size: int) -> list[tuple[int, int, int]]:
    """(partition, start, end) pieces of at most `size` offsets covering what each partition plan reads."""
    return [(pp.partition, s, min(s + size, pp.end)) for pp in parts for s in range(pp.read_from, pp.end, size)]


def backfill_bronze(spark: SparkSession, project: Project, pipeline: str, parts: list[PartitionPlan], range_text: str,
                    dry_run: bool = False, allow_gaps: bool = False, chunk: int = 1_000_000,
                    progress: Callable[[int, int], None] | None = None) -> audit.Record:  # fmt: skip
    p = project.pipeline(pipeline)
    path, topic = p.layout.bronze.path, p.topic
    stream = (stream_start_offsets(spark, p.layout.checkpoint("bronze")) or {}).get(topic)
    if stream:  # the stream reads every record from where it started: those are its own, never the backfill's
        parts = [dataclasses.replace(pp, end=min(pp.end, stream.get(pp.partition, pp.end))) for pp in parts]
        parts = [dataclasses.replace(pp, start=min(pp.start, pp.end)) for pp in parts]
    in_bronze = _already_in_bronze(spark, path, topic, parts)
    gaps = [pp for pp in parts if pp.gap and in_bronze.get(pp.partition, -1) < pp.low - 1]
    gap_text = "; ".join(f"partition {pp.partition} offsets {max(pp.start, in_bronze.get(pp.partition, -1) + 1)}-"
                         f"{min(pp.low, pp.end)} ({min(pp.low, pp.end) - max(pp.start, in_bronze.get(pp.partition, -1) + 1):,} "
                         "records) expired from the topic" for pp in gaps)  # fmt: skip
    args = {"layer": "bronze", "topic": topic, "parts": [(pp.partition, pp.read_from, pp.end) for pp in parts]}
    record = audit.Record(audit.backfill_id(p, args), pipeline, "bronze", p.layout.bronze.name, range_text,
                          rows_read=sum(pp.to_read for pp in parts), detail=gap_text)  # fmt: skip
    if dry_run:
        record.status = "dry run"
        return record
    if gaps and not allow_gaps:
        raise GapError(f"{gap_text}: nothing written; run again with --allow-gaps to load the rest")
    with audit.recording(spark, project, record):
        pieces = chunks(parts, chunk)
        done = 0
        for partition, start, end in pieces:  # one commit each: a run killed half-way keeps the pieces it committed
            piece = json.dumps({topic: {str(partition): start}}), json.dumps({topic: {str(partition): end}})
            rows = (spark.read.format("kafka").options(**kafka_options(project.settings.kafka))
                    .option("assign", json.dumps({topic: [partition]}))
                    .option("startingOffsets", piece[0]).option("endingOffsets", piece[1]).load())  # fmt: skip
            record.rows_written += retry_on_conflict(lambda: _insert_missing(spark, path, to_bronze(rows, batch_time.now()), partition, start, end))
            done += end - start
            if progress:
                progress(done, record.rows_read)
    return record


def _already_in_bronze(spark: SparkSession, path: str, topic: str, parts: list[PartitionPlan]) -> dict[int, int]:
    """Per partition, the highest offset bronze holds below the topic's first kept offset (-1: none)."""
    bronze = spark.read.format("delta").load(path).where(F.col("topic") == topic)
    cond = F.lit(False)
    for pp in parts:
        cond = cond | ((F.col("partition") == pp.partition) & (F.col("offset") < pp.low))
    return {r.partition: r.top for r in bronze.where(cond).groupBy("partition").agg(F.max("offset").alias("top")).collect()}


def _insert_missing(spark: SparkSession, path: str, rows, partition: int, start: int, end: int) -> int:  # noqa: ANN001
    """Insert the rows whose Kafka position bronze does not hold, in one commit; how many were inserted."""
    within = f"t.partition = {partition} AND t.offset >= {start} AND t.offset < {end}"
    metrics = (DeltaTable.forPath(spark, path).alias("t")
               .merge(rows.alias("s"), f"t.topic = s.topic AND t.partition = s.partition AND t.offset = s.offset AND ({within})")
               .whenNotMatchedInsertAll().execute().first())  # fmt: skip
    return int(metrics["num_inserted_rows"]) if metrics is not None else 0
