"""Start the streaming query of one output of a pipeline, by how it is written (`pipelines.model.spec`).

- Upsert: the output's function over the watermarked silver stream, MERGEd by its keys (update mode);
- Append: the same, appended (rows final once the watermark passes);
- Rebuild: every key value a micro-batch touches recomputed from silver (`RebuildWriter`). A rebuild from the
  pipeline's own silver alone (`OutputSpec.inline`: SCD tables) has no query: the silver query refreshes it.

A continuous upsert runs no micro-batch without new rows (`spark.sql.streaming.noDataMicroBatches.enabled` off
for its query alone): in update mode every change is written by the batch that brings it, and a batch without
input would only drop expired windows and sessions from state (the next batch with rows does that too), yet it
cost each gold query a planned, state-committing micro-batch after nearly every silver commit. Late rows are
filtered as before, also after a restart: a query resumes with the watermark its last committed batch's rows
advanced it to (Spark keeps it in the checkpoint's commit log). `--once` runs (`availableNow`) keep them, so that
a scheduled run leaves its state pruned to what the watermark still holds open; so do appends, whose rows are
final, and written, only once the watermark passes, which may take a batch without input. An upsert's batch
without input (`batch_brings_input`, from the offset log) does not compute the gold table's state ahead of a MERGE
it almost never makes (~0.45 s of a one-query `--once` run's 2.85 s on 2 cores).

A query is named `<pipeline>.<layer>.<output>`. Its checkpoint stays at `<pipeline>/gold/<output>` whatever
the layer, where every lakepipe so far has kept it, so that running queries carry on after an upgrade.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine.delta_io import batch_brings_input, hadoop_path, read_stream, upsert_nonempty
from pipelines.engine.gold.rebuild import RebuildWriter
from pipelines.model.project import Pipeline
from pipelines.model.spec import Append, OutputSpec, Rebuild, Upsert
from pipelines.platform.session import session_confs


def start_output(spark: SparkSession, p: Pipeline, o: OutputSpec, trigger: dict) -> StreamingQuery:
    name = f"{p.name}.{o.layer}.{o.name}"
    checkpoint = output_checkpoint(p, o)
    continuous = "processingTime" in trigger  # an upsert then runs no batch without input (NO_DATA_BATCHES below)
    match o.write:
        case Rebuild():
            source = p.source_layout(o).silver.path
            query = _silver_stream(spark, source, p.max_bytes_per_trigger).writeStream.foreachBatch(rebuild_writer(p, o))
        case Append():
            path = p.layout.output(o.name).path
            query = _rows(spark, p, o).writeStream.format("delta").outputMode("append").option("path", path)
        case Upsert(keys=keys, delete_flag=flag):
            path = p.layout.output(o.name).path

            def upsert(batch: DataFrame, batch_id: int) -> None:
                warm = continuous or batch_brings_input(batch.sparkSession, checkpoint, batch_id)
                upsert_nonempty(batch, path, keys, flag, warm=warm)

            query = _rows(spark, p, o).writeStream.outputMode("update").foreachBatch(upsert)
    query = query.queryName(name).option("checkpointLocation", checkpoint).trigger(**trigger)
    own = {NO_DATA_BATCHES: "false"} if isinstance(o.write, Upsert) and continuous else {}
    # The pipeline's settings (where the platform takes them), then this query's: each read when it starts.
    with session_confs(spark, p.query_conf(), strict=False), session_confs(spark, own):
        return query.start()


NO_DATA_BATCHES = "spark.sql.streaming.noDataMicroBatches.enabled"


def rebuild_writer(p: Pipeline, o: OutputSpec) -> RebuildWriter:
    source = p.source_layout(o).silver.path
    return RebuildWriter(p.functions[o.name], o.rebuild.key, source, p.layout.output(o.name).path, p.lookup_paths(o), o.options)


def inline_rebuilds(p: Pipeline) -> list[RebuildWriter]:
    """The writers of `p`'s inline outputs (`OutputSpec.inline`), which its silver query runs after each append."""
    return [rebuild_writer(p, o) for o in p.spec.outputs if o.inline]


def output_checkpoint(p: Pipeline, o: OutputSpec) -> str:
    return p.layout.checkpoint(f"gold/{o.name}")


def retire_inline_queries(spark: SparkSession, p: Pipeline) -> list[str]:
    """Before inline outputs, each was written by a query of its own. Where such a query's checkpoint exists, it
    runs once more to the end of silver (the rows it had not taken yet), then its checkpoint is renamed to
    `<checkpoint>.retired`, so an upgrade misses no change. Returns the outputs retired."""
    retired = []
    for o in p.spec.outputs:
        checkpoint = output_checkpoint(p, o)
        fs, path = hadoop_path(spark, checkpoint)
        if o.inline and fs.exists(path):
            start_output(spark, p, o, {"availableNow": True}).awaitTermination()
            fs.rename(path, hadoop_path(spark, checkpoint.rstrip("/") + ".retired")[1])
            retired.append(o.name)
    return retired


def _silver_stream(spark: SparkSession, path: str, max_bytes: str | None):  # noqa: ANN202
    """Silver's appends as a stream, at most `max_bytes` of silver's files per micro-batch. A silver backfill's
    commits (which replace rows of a range) are skipped: the backfill recomputes the derived tables of that range
    itself (`pipelines.backfill.silver`)."""
    return read_stream(spark, path, max_bytes, skip_change_commits=True)


def _rows(spark: SparkSession, p: Pipeline, o: OutputSpec):  # noqa: ANN202
    events = _silver_stream(spark, p.layout.silver.path, p.max_bytes_per_trigger)
    return p.output_rows(o, events.withWatermark(p.spec.event_time, p.watermark))
