"""Start the streaming query of one gold output of a pipeline, by its mode.

- upsert: the output's function over the watermarked silver stream, MERGEd by its keys (update mode);
- append: the same, appended (rows final once the watermark passes);
- rebuild: every key value a micro-batch touches recomputed from silver (`RebuildWriter`).
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine.delta_io import upsert_nonempty
from pipelines.engine.gold.rebuild import RebuildWriter
from pipelines.model.project import Pipeline
from pipelines.model.spec import GoldSpec


def start_gold(spark: SparkSession, p: Pipeline, g: GoldSpec, trigger: dict) -> StreamingQuery:
    if g.mode == "rebuild":
        return _rebuild(spark, p, g, trigger)
    events = spark.readStream.format("delta").load(p.layout.silver.path)
    events = events.withWatermark(p.spec.event_time, p.watermark)
    path = p.layout.gold_table(g.name).path
    checkpoint = p.layout.checkpoint(f"gold/{g.name}")
    writer = p.gold_rows(g, events).writeStream.queryName(f"{p.name}.gold.{g.name}")
    if g.mode == "append":  # rows final once the watermark passes (alerts, closed windows)
        writer = writer.format("delta").outputMode("append").option("checkpointLocation", checkpoint)
        return writer.trigger(**trigger).start(path)
    return (
        writer.outputMode("update")
        .foreachBatch(lambda batch, _batch_id: upsert_nonempty(batch, path, g.keys, g.delete_flag))
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
        .start()
    )


def _rebuild(spark: SparkSession, p: Pipeline, g: GoldSpec, trigger: dict) -> StreamingQuery:
    source = p.source_layout(g).silver.path
    writer = RebuildWriter(
        p.functions[g.name], g.keys[0], source, p.layout.gold_table(g.name).path, p.lookup_paths(g), g.options
    )
    return (
        spark.readStream.format("delta")
        .load(source)
        .writeStream.queryName(f"{p.name}.gold.{g.name}")
        .foreachBatch(writer)
        .option("checkpointLocation", p.layout.checkpoint(f"gold/{g.name}"))
        .trigger(**trigger)
        .start()
    )
