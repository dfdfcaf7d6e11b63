"""S1: does the cost per record stay flat as the backlog grows? And how many files does a long run leave?

- S1: our bronze query drains backlogs of growing size (0.5M, 1M, 2M records); microseconds per record at each
  size, median of the repeats; flat means the largest costs at most 15% more per record than the smallest.
- S1e: the whole clickstream pipeline (`run --once`: bronze, then silver with its quality suite, then gold)
  over smaller backlogs (silver and gold take ~2k records/s on 2 cores, so 2M records would take most of an
  hour); per stage and in all, one drain per size.
- S2: silver's cost as silver grows: one `--once` silver run (with its suite) over the same 50,000 new
  events into a silver table that already holds ~10M rows (written directly, event times spread over the 90
  days up to the new events' day) / into an empty one. The full table is restored to its pre-run version
  after each run, so every run meets the same table.
- S2d: S2 with the same ~10M rows dense in event time: within the dedup horizon of the new events' event times
  (10M rows in ~2-3 hours: a shop of ~1,000-1,400 events/s). Silver's lookup reads the silver rows of the new
  events' hours widened by the horizon, so S2 (4,600 rows an hour) does not show what that lookup costs at a
  realistic density; S2d does.
- Files: the tables that L1e's continuous run left, counted in files, compacted with OPTIMIZE, counted again.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import functions as F

from pipelines.bench import common, stages
from pipelines.bench.common import DriverMemory, Figure, Topics, scratch_dir
from pipelines.bench.latency import pipeline_settings
from pipelines.bench.stages import drain_ours
from pipelines.engine import runner
from pipelines.engine.dedup import DEDUP_HASH, key_hash
from pipelines.engine.silver import silver_schema
from pipelines.engine.tables import create_pipeline_tables
from pipelines.model import durations
from pipelines.model.config import KafkaSettings, Settings
from pipelines.model.project import load_project
from pipelines.ops.maintenance import compact

STAGES = ("bronze", "silver", "gold")


def drain_pipeline(spark, settings: Settings, topic: str, root: Path) -> list[float]:  # noqa: ANN001
    """Seconds per stage of one `run --once` of the clickstream pipeline over `topic`, lake under `root`."""
    env = pipeline_settings(settings, root, topic, settings.streaming.trigger_interval)
    return runner.run(spark, load_project(env, ["clickstream"]), ["clickstream"], once=True).stage_seconds[: len(STAGES)]


def _flatness(name: str, what: str, rows: list[dict], memory: DriverMemory, key: str) -> Figure:
    """Cost per record, largest / smallest backlog; with the marginal cost per record between sizes (what an
    extra record costs once the fixed costs of a run are paid), which is what grows if something is superlinear."""
    for prev, row in zip(rows, rows[1:]):
        extra = (row[key] * row["records"] - prev[key] * prev["records"]) / (row["records"] - prev["records"])
        row["marginal_us"] = round(extra, 2)
    first, last = rows[0], rows[-1]
    return Figure(name, f"{what}: us per record at {last['records']:,} / at {first['records']:,} records (lower is "
                  "better)", last[key], first[key], unit="us/record", lower_is_better=True, peak_rss_mb=memory.peak_mb,
                  target=1.15, details={"sizes": rows})  # fmt: skip


def bench_growth(spark, settings: Settings, topics: Topics, sizes: tuple[int, ...], scratch: Path) -> Figure:  # noqa: ANN001
    """S1: bronze drains of each size, median of the repeats."""
    memory = DriverMemory(spark)
    rows = []
    for n in sizes:
        topic = topics.with_records("s1", n)
        runs = []
        for _ in range(common.REPEATS):
            with scratch_dir(scratch) as root, memory.sampled():
                start = time.perf_counter()
                drain_ours(spark, settings.kafka, topic, root)
                runs.append((time.perf_counter() - start) / n * 1e6)
        rows.append({"records": n, "bronze_us": round(statistics.median(runs), 2), "runs": [round(r, 2) for r in runs]})
    return _flatness("S1", "bronze drain", rows, memory, "bronze_us")


def bench_growth_pipeline(spark, settings: Settings, topics: Topics, sizes: tuple[int, ...], scratch: Path) -> Figure:  # noqa: ANN001
    """S1e: the whole pipeline once per size, after a warm-up."""
    if common.WARM_UP:
        with scratch_dir(scratch) as root:
            drain_pipeline(spark, settings, topics.with_records("s1", 5_000), root)
    memory = DriverMemory(spark)
    rows = []
    for n in sizes:
        topic = topics.with_records("s1", n)
        with scratch_dir(scratch) as root, memory.sampled():
            seconds = drain_pipeline(spark, settings, topic, root)
        rows.append({"records": n, "seconds": round(sum(seconds), 1)}
                    | {f"{s}_us": round(t / n * 1e6, 1) for s, t in zip(STAGES, seconds)}
                    | {"total_us": round(sum(seconds) / n * 1e6, 1)})  # fmt: skip
    return _flatness("S1e", "whole pipeline --once", rows, memory, "total_us")


DAYS = 90


def fill_silver(spark, path: str, rows: int, start: float, end: float) -> None:  # noqa: ANN001
    """`rows` silver rows of other events, event times spread evenly over [start, end) (epoch seconds)."""
    resolved = stages.clickstream()
    schema = silver_schema(resolved.contract)
    create_pipeline_tables(spark, stages.pipeline(Path(path).parent, path))
    span = int(end - start)
    base = spark.range(rows).select(
        F.format_string("old-%012d", "id").alias("event_id"),
        F.timestamp_seconds(F.lit(int(start)) + (F.col("id") * 7919 % span)).alias("event_time"),
        F.format_string("user-%d", F.col("id") % 50_000).alias("user_id"),
        F.format_string("session-%d", F.col("id") % 400_000).alias("session_id"),
        F.lit("page_view").alias("event_type"), F.lit("/products/p-1").alias("page_url"), F.lit("desktop").alias("device"),
        F.lit("US").alias("country"), F.sha2(F.col("id").cast("string"), 256).alias("payload_hash"),
        F.lit("bench.s2").alias("topic"), F.lit(0).alias("partition"), F.col("id").alias("offset"),
        F.current_timestamp().alias("kafka_timestamp"), F.current_timestamp().alias("silver_time"),
        F.array().cast("array<string>").alias("warnings"),
    ).withColumn("event_date", F.to_date("event_time")).withColumn(DEDUP_HASH, key_hash(resolved.spec.dedup_keys))
    filled = base.select(*[(F.col(f.name) if f.name in base.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                           for f in schema.fields])  # fmt: skip
    filled.write.format("delta").mode("append").save(path)


def bench_silver_growth(
    spark, kafka: KafkaSettings, topics: Topics, n: int, rows: int, scratch: Path, dense: bool = False  # noqa: ANN001
) -> Figure:  # fmt: skip
    """S2: the same n new events through silver into a table of `rows` rows / into an empty table; S2d (`dense`):
    the rows within the dedup horizon of the new events' event times."""
    resolved = stages.clickstream()
    bronze = stages.make_bronze(spark, kafka, topics, n, scratch / "s2")
    t = F.get_json_object(F.col("value").cast("string"), "$.event_time").cast("timestamp")
    first, last = spark.read.format("delta").load(bronze).select(F.unix_seconds(F.min(t)), F.unix_seconds(F.max(t))).first()
    if dense:
        horizon = durations.seconds(resolved.spec.dedup_horizon)
        start, end, spread = first - horizon, last + horizon + 1, "within the dedup horizon"
    else:
        end = (last // 86400 + 1) * 86400  # the end of the newest event's day (UTC)
        start, spread = end - DAYS * 86400, f"over {DAYS} days"
    name = "S2d" if dense else "S2"
    full = str(scratch / f"{name.lower()}-full" / "silver")
    fill_silver(spark, full, rows, start, end)
    before = DeltaTable.forPath(spark, full).history(1).first().version
    memory = DriverMemory(spark)

    def run(filled: bool) -> float:
        with scratch_dir(scratch) as root, memory.sampled():
            elapsed = stages.silver_drain(spark, bronze, root, resolved.suite, full if filled else None)
            if filled:
                DeltaTable.forPath(spark, full).restoreToVersion(before)
            return elapsed

    if common.WARM_UP:
        run(True), run(False)
    ours, base = common.timed_pairs(lambda: run(True), lambda: run(False))
    hours = round((end - start) / 3600, 1)
    return Figure.of_runs(name, f"silver --once over the same {n:,} new events: into {rows:,} rows {spread} ({hours:,} "
                          "hours of event time) / into an empty table (lower is better)", ours, base, unit="s",
                          lower_is_better=True, peak_rss_mb=memory.peak_mb, target=1.2)  # fmt: skip


def files_after_long_run(spark, settings: Settings, l1_root: Path) -> list[dict]:  # noqa: ANN001
    """Files per table that L1e's continuous run left, before and after compaction."""
    layout = load_project(pipeline_settings(settings, l1_root, "-", "0 seconds"), ["clickstream"]).pipeline("clickstream").layout
    return [vars(c) for c in compact(spark, list(layout.tables))]
