"""Start the streaming query of one output of a pipeline, by how it is written (`pipelines.model.spec`).

- Upsert: the output's function over the watermarked silver stream, MERGEd by its keys (update mode);
- Append: the same, appended (rows final once the watermark passes);
- Rebuild: every key value a micro-batch touches recomputed from silver (`RebuildWriter`).

A query is named `<pipeline>.<layer>.<output>`. Its checkpoint stays at `<pipeline>/gold/<output>` whatever
the layer, where every lakepipe so far has kept it, so that running queries carry on after an upgrade.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine.delta_io import upsert_nonempty
from pipelines.engine.gold.rebuild import RebuildWriter
from pipelines.model.project import Pipeline
from pipelines.model.spec import Append, OutputSpec, Rebuild, Upsert


def start_output(spark: SparkSession, p: Pipeline, o: OutputSpec, trigger: dict) -> StreamingQuery:
    path = p.layout.output(o.name).path
    name = f"{p.name}.{o.layer}.{o.name}"
    checkpoint = p.layout.checkpoint(f"gold/{o.name}")
    match o.write:
        case Rebuild(key=key):
            source = p.source_layout(o).silver.path
            writer = RebuildWriter(p.functions[o.name], key, source, path, p.lookup_paths(o), o.options)
            query = _silver_stream(spark, source).writeStream.foreachBatch(writer)
        case Append():
            query = _rows(spark, p, o).writeStream.format("delta").outputMode("append").option("path", path)
        case Upsert(keys=keys, delete_flag=flag):
            upsert = lambda batch, _batch_id: upsert_nonempty(batch, path, keys, flag)  # noqa: E731
            query = _rows(spark, p, o).writeStream.outputMode("update").foreachBatch(upsert)
    return query.queryName(name).option("checkpointLocation", checkpoint).trigger(**trigger).start()


def _silver_stream(spark: SparkSession, path: str):  # noqa: ANN202
    """Silver's appends as a stream. A silver backfill's commits (which replace rows of a range) are skipped: the
    backfill recomputes the derived tables of that range itself (`pipelines.backfill.silver`)."""
    return spark.readStream.format("delta").option("skipChangeCommits", "true").load(path)


def _rows(spark: SparkSession, p: Pipeline, o: OutputSpec):  # noqa: ANN202
    events = _silver_stream(spark, p.layout.silver.path)
    return p.output_rows(o, events.withWatermark(p.spec.event_time, p.watermark))
