"""Silver backfill: re-derive silver (and quarantine) from a range of bronze, then refresh what depends on it.

The range is the records' event time, read from the raw JSON by the contract's event-time path (as the dedup
lookup reads it; a silver row's event time is that same value), or their Kafka timestamps (`kafka_time`), the
way to reach records with no readable event time. Bronze's records in the range go through the current contract
and suite (row rules) exactly as the silver query would take them, deduplicated against every silver row outside
the range; silver's and quarantine's rows in the range are then replaced by the result (one commit each), only
at the Kafka positions re-derived. Derived tables follow: rebuild outputs for every key value the old or new rows touch,
windowed outputs for the event-time span of those rows; outputs that keep streaming state are named as not
refreshed. For a contract or suite fix that changes which records are accepted, or a typing bug.
"""

from __future__ import annotations

import datetime as dt

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.backfill import audit
from pipelines.backfill.gold import recompute_output
from pipelines.engine import silver as engine
from pipelines.engine.dedup import DEDUP_HASH, rough_event_time_sql
from pipelines.engine.delta_io import replace_where, retry_on_conflict, table_version
from pipelines.engine.gold.rebuild import sql_literal
from pipelines.engine.pii import privacy_of
from pipelines.errors import LakepipeError
from pipelines.model.project import Project


def backfill_silver(spark: SparkSession, project: Project, pipeline: str, start: dt.datetime, end: dt.datetime,
                    dry_run: bool = False, force: bool = False, kafka_time: bool = False) -> audit.Record:  # fmt: skip
    """Re-derive the records whose event time (read from the raw JSON as the dedup lookup does) is in [start, end),
    or with `kafka_time` whose Kafka timestamp is: the way to reach records with no readable event time."""
    p = project.pipeline(pipeline)
    lay, spec, contract = p.layout, p.spec, p.contract
    within = lambda column: f"{column} >= {sql_literal(start)} AND {column} < {sql_literal(end)}"  # noqa: E731
    if kafka_time:
        on_bronze = on_silver = on_quarantine = within("kafka_timestamp")
    else:
        rough = rough_event_time_sql(contract.field(spec.event_time))
        on_bronze, on_silver, on_quarantine = within(f"({rough})"), within(f"`{spec.event_time}`"), within(f"({rough})")
    bronze = spark.read.format("delta").load(lay.bronze.path).where(F.expr(on_bronze))
    version = table_version(spark, lay.bronze.path)
    range_text = f"{'Kafka' if kafka_time else 'event'} time [{start.isoformat()}, {end.isoformat()})"
    bid = audit.backfill_id(p, {"layer": "silver", "table": lay.silver.name, "start": start, "end": end,
                                "kafka_time": kafka_time}, version)  # fmt: skip
    record = audit.Record(bid, pipeline, "silver", lay.silver.name, range_text)
    done = audit.succeeded_before(spark, project, bid)
    if done and not force:
        record.status, record.detail = "skipped", f"the same backfill over the same bronze version succeeded at {done}"
        return record
    record.rows_read = bronze.count()
    if dry_run:
        record.status = "dry run"
        return record
    # Only the Kafka positions re-derived here are replaced: rows the silver stream appends meanwhile (from newer
    # bronze records) stay, whichever of the two commits first.
    tops = bronze.groupBy("topic", "partition").agg(F.max("offset").alias("top")).collect()
    positions = " AND (" + (" OR ".join(f"(topic = {sql_literal(t.topic)} AND partition = {t.partition} AND "
                                         f"offset <= {t.top})" for t in tops) or "false") + ")"  # fmt: skip
    predicate, on_quarantine = on_silver + positions, on_quarantine + positions
    bronze = bronze.where(F.expr(on_bronze + positions))
    with audit.recording(spark, project, record):
        silver = spark.read.format("delta").load(lay.silver.path)
        keys = spec.dedup_keys
        outside = silver.where(~F.expr(predicate)).select(*keys, "payload_hash")
        validated = engine.validate(bronze, contract, p.suite)
        classified = engine.classify_validated(validated, outside, keys, spec.tombstones == "skip")
        classified = classified.persist(StorageLevel.MEMORY_AND_DISK)
        old = silver.where(F.expr(predicate)).select(spec.event_time, *_rebuild_keys(p)).persist()
        try:
            protected = privacy_of(p, project.settings)
            rows = protected.silver(engine.to_silver_rows(classified, contract, spec, hashed=DEDUP_HASH in silver.columns))
            rejected = protected.quarantine(engine.to_quarantine_rows(classified, contract, spec))
            record.rows_replaced = old.count()
            record.rows_written = rows.count()
            quarantined = rejected.count()
            retry_on_conflict(lambda: replace_where(rows, lay.silver.path, predicate))
            retry_on_conflict(lambda: replace_where(rejected, lay.quarantine.path, on_quarantine))
            touched = old.unionByName(rows.select(spec.event_time, *_rebuild_keys(p)))
            refreshed = refresh_outputs(spark, project, pipeline, touched)
        finally:
            classified.unpersist()
            old.unpersist()
        record.detail = f"{quarantined:,} quarantined; {refreshed}"
    return record


def _rebuild_keys(p) -> list[str]:  # noqa: ANN001
    return sorted({o.rebuild.key for o in p.spec.outputs if o.rebuild and not o.rebuild.source} - {p.spec.event_time})


def refresh_outputs(spark: SparkSession, project: Project, pipeline: str, touched: DataFrame) -> str:
    """Recompute every output of `pipeline` for the rows `touched` (old and new silver rows of a range)."""
    p = project.pipeline(pipeline)
    span = touched.agg(F.min(p.spec.event_time).alias("lo"), F.max(p.spec.event_time).alias("hi")).first()
    if span.lo is None:
        return "no derived table to refresh"
    start = span.lo.replace(minute=0, second=0, microsecond=0)
    end = span.hi.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    done, skipped = [], []
    for o in p.spec.outputs:
        if o.rebuild and o.rebuild.source:
            skipped.append(f"{o.name} (reads {o.rebuild.source}: backfill it by range)")
            continue
        try:
            recompute_output(spark, p, o, start, end, touched)
            done.append(o.name)
        except LakepipeError:
            skipped.append(f"{o.name} (keeps streaming state)")
    text = f"refreshed {', '.join(done) or 'nothing'} over event time [{start}, {end})"
    return text + (f"; not refreshed: {', '.join(skipped)}" if skipped else "")
