"""Derived-table backfill: recompute an event-time range of an output from silver, replace it in one commit.

- An upsert or append output (windowed aggregates, alerts): its function runs as a batch over the silver rows
  with event times in [start, end + lookahead) (a window that starts before `end` may hold events up to its
  length later), and the table's rows whose time column (its first timestamp key, else its first timestamp
  column) is in [start, end) are replaced by the result's rows in that range, in one commit (`replaceWhere`).
  Outputs that keep streaming state across batches (transformWithState: sessions, anomalies, silent devices,
  fraud rules) cannot be recomputed this way and say so.
- A rebuild output (SCD tables, revenue per tier): every key value touched by silver rows in the range is
  recomputed from all of silver, exactly as the stream does.
Beside a running stream, only the windows the stream has closed are replaced (those ending at or before the
watermark its next micro-batch will use): it never writes those again, so the two never race on a window; a
commit that still conflicts at the file level is retried.
"""

from __future__ import annotations

import datetime as dt
import uuid

from py4j.protocol import Py4JError
from pyspark.errors import AnalysisException, UnsupportedOperationException
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.backfill import audit
from pipelines.engine.delta_io import committed_watermark_ms, replace_where, retry_on_conflict, table_version
from pipelines.engine.gold.outputs import rebuild_writer
from pipelines.engine.gold.rebuild import sql_literal
from pipelines.errors import LakepipeError
from pipelines.model.project import Pipeline, Project
from pipelines.model.spec import OutputSpec

LOOKAHEAD = dt.timedelta(days=1)  # longest window an output may have


def backfill_output(spark: SparkSession, project: Project, pipeline: str, table: str, start: dt.datetime, end: dt.datetime,
                    dry_run: bool = False, force: bool = False) -> audit.Record:  # fmt: skip
    p = project.pipeline(pipeline)
    o = next((o for o in p.spec.outputs if o.name == table), None)
    if o is None:
        raise LakepipeError(f"pipeline {pipeline} has no output '{table}' (outputs: {', '.join(x.name for x in p.spec.outputs)})")
    source = p.source_layout(o).silver.path
    version = table_version(spark, source)
    range_text = f"event time [{start.isoformat()}, {end.isoformat()})"
    bid = audit.backfill_id(p, {"layer": o.layer, "table": table, "start": start, "end": end}, version, o.name)
    record = audit.Record(bid, pipeline, o.layer, table, range_text)
    done = None if force else audit.succeeded_before(spark, project, bid)
    if done:
        record.status, record.detail = "skipped", f"the same backfill over the same silver version succeeded at {done}"
        return record
    event_time = p.spec.event_time
    in_range = spark.read.format("delta").load(source).where((F.col(event_time) >= start) & (F.col(event_time) < end))
    if dry_run or o.rebuild:
        record.rows_read = in_range.count()
    if dry_run:
        record.status = "dry run"
        return record
    with audit.recording(spark, project, record):
        if o.rebuild:
            record.rows_written, _ = recompute_output(spark, p, o, start, end, in_range)
            record.detail = f"{record.rows_written:,} values of {o.rebuild.key} recomputed"
        else:
            path = p.layout.output(o.name).path
            record.rows_read, record.rows_written, record.rows_replaced = _replace_range(spark, p, o, path, start, end)
    return record


def recompute_output(spark: SparkSession, p: Pipeline, o: OutputSpec, start: dt.datetime, end: dt.datetime,
                     touched: DataFrame) -> tuple[int, int]:  # fmt: skip
    """Recompute output `o`: a rebuild output for the key values of the silver rows `touched`, any other for the
    event-time range [start, end). (Rows or key values written, rows replaced.)"""
    path = p.layout.output(o.name).path
    if o.rebuild:
        writer = rebuild_writer(p, o)
        keys = touched.select(o.rebuild.key).distinct().count()
        retry_on_conflict(lambda: writer(touched, 0))
        return keys, 0
    return _replace_range(spark, p, o, path, start, end)[1:]


def _replace_range(spark: SparkSession, p: Pipeline, o: OutputSpec, path: str, start: dt.datetime,
                   end: dt.datetime) -> tuple[int, int, int]:  # fmt: skip
    """(silver rows read, rows written, rows replaced) of recomputing [start, end) of output `o`."""
    table = spark.read.format("delta").load(path)
    column = time_column(table.schema, o.keys)
    predicate = f"`{column}` >= {sql_literal(start)} AND `{column}` < {sql_literal(end)}"
    watermark = committed_watermark_ms(spark, p.layout.checkpoint(f"gold/{o.name}"))
    if watermark is not None and "window_end" in table.columns:
        # Windows the stream still holds open are its own to finish: replacing them could race its next update.
        final = dt.datetime.fromtimestamp(watermark / 1000, dt.UTC).replace(tzinfo=None)
        predicate += f" AND `window_end` <= {sql_literal(final)}"
    event_time = p.spec.event_time
    read = Observation("read")
    silver = spark.read.format("delta").load(p.layout.silver.path)
    in_range = silver.where((F.col(event_time) >= start) & (F.col(event_time) < end + LOOKAHEAD))
    events = in_range.observe(read, F.count(F.lit(1)).alias("rows"))
    try:
        rows = p.output_rows(o, events)
        if o.delete_flag:
            rows = rows.where(~F.col(o.delete_flag)).drop(o.delete_flag)
        rows = rows.where(F.expr(predicate)).select(*table.columns)
        rows.schema  # noqa: B018 - analysis: a stateful function fails here
        tag = f"lakepipe backfill {uuid.uuid4().hex}"
        written, replaced = retry_on_conflict(lambda: replace_where(rows, path, predicate, tag))
    except (AnalysisException, UnsupportedOperationException) as exc:
        raise LakepipeError(f"output {o.name} keeps streaming state between micro-batches and cannot be recomputed as a "
                            f"batch ({str(exc).splitlines()[0][:160]})") from None  # fmt: skip
    try:
        return read.get["rows"], written, replaced
    except Py4JError:  # no job ran the read (nothing to write): count it
        return in_range.count(), written, replaced


def time_column(schema: T.StructType, keys: tuple[str, ...]) -> str:
    """The column that places an output's rows in event time: its first timestamp key, else its first timestamp."""
    types = {f.name: f.dataType for f in schema.fields}
    for name in [*keys, *types]:
        if isinstance(types.get(name), T.TimestampType):
            return name
    raise LakepipeError(f"no timestamp column to select a range by (columns: {', '.join(types)})")



