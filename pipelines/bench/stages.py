"""P2, P3 and P4: each stage of the pipeline against the strongest simple job doing the same move.

- P2 bronze: our bronze query draining a backlog (AvailableNow) / the minimal documented job
  (readStream kafka -> CAST(value AS STRING) -> writeStream delta, AvailableNow), same backlog.
- P3 silver: our silver query over one bronze table with the clickstream expectation suite (row rules in the
  parsing pass, batch rules through Great Expectations) / the same query with no suite.
- P5 silver: our silver query without a suite (exact JSON types, every reason, extra fields, dedup with
  conflicts, quarantine, audit) / the minimal typed silver job (bronze Delta -> from_json with the contract's
  schema -> dropDuplicatesWithinWatermark on the dedup key -> Delta append), same bronze table.
- P4 gold: the clickstream gold queries (windowed aggregates and sessions, update mode + MERGE) over one
  silver table / a plain streaming append of the same silver rows to Delta.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import functions as F

from pipelines.bench import common
from pipelines.bench.common import DriverMemory, Figure, Topics, scratch_dir, timed_pairs
from pipelines.engine.bronze import BRONZE_SCHEMA, start_bronze
from pipelines.engine.delta_io import ensure_table
from pipelines.engine.gold.outputs import start_output
from pipelines.engine.silver import SilverBatchWriter
from pipelines.engine.tables import create, create_pipeline_tables, output_schema
from pipelines.errors import LakepipeError
from pipelines.model.config import KafkaSettings
from pipelines.model.layout import PipelineLayout, Table
from pipelines.model.project import Pipeline
from pipelines.model.spec import FilesSpec, ResolvedSpec, resolve_spec
from pipelines.platform.jars import PROJECT_DIR

AVAILABLE_NOW = {"availableNow": True}


def clickstream() -> ResolvedSpec:
    return resolve_spec(PROJECT_DIR / "conf" / "pipelines" / "clickstream.yaml", PROJECT_DIR / "schemas")


def layout(root: Path, silver: str | None = None) -> PipelineLayout:
    """The clickstream tables under `root` (silver elsewhere if given), of the clickstream pipeline (so they are
    created with the table properties its own tables get)."""
    spec = clickstream().spec
    t = lambda name, layer, parts=(): Table(name, layer, spec.name, str(root / name), partition_by=parts)  # noqa: E731
    outputs = tuple(t(o.name, o.layer) for o in spec.outputs)
    out = PipelineLayout("bench", t("bronze", "bronze"), t("silver", "silver", spec.partition_by),
                         t("quarantine", "quarantine"), t("batches", "audit"), outputs, str(root / "ckpt"),
                         t("quality", "audit"))  # fmt: skip
    return dataclasses.replace(out, silver=dataclasses.replace(out.silver, path=silver)) if silver else out


def pipeline(root: Path, silver: str | None = None) -> Pipeline:
    """The clickstream pipeline with its tables under `root` (silver elsewhere if given). Its tables get the table
    properties the pipeline's own get, but for the small-file remedies of its spec's `files` (auto compaction; bench
    F1 measures them): Delta compacts each partition the first time a JVM writes it, ~1.7 s of a one-batch run."""
    resolved = clickstream()
    spec = dataclasses.replace(resolved.spec, files=FilesSpec())
    return Pipeline(spec, resolved.contract, resolved.functions, "-", "10 minutes", layout(root, silver), {})


def count(spark, path: str | Path) -> int:  # noqa: ANN001
    return spark.read.format("delta").load(str(path)).count()


def expect_rows(spark, path: str | Path, n: int, what: str) -> None:  # noqa: ANN001
    if (rows := count(spark, path)) != n:
        raise LakepipeError(f"{what} wrote {rows} rows, expected {n}")


def start_bronze_table(spark, kafka: KafkaSettings, topic: str, root: Path, trigger: dict, table: str = "delta"):  # noqa: ANN001, ANN201
    """Our bronze query into root/<table>, created first as `lakepipe run` does (partitioned by day)."""
    ensure_table(spark, str(root / table), BRONZE_SCHEMA)
    return start_bronze(spark, kafka, topic, str(root / table), str(root / "ckpt"), trigger, f"bench.{root.name}")


def drain_ours(spark, kafka: KafkaSettings, topic: str, root: Path) -> Path:  # noqa: ANN001
    start_bronze_table(spark, kafka, topic, root, AVAILABLE_NOW, "bronze").awaitTermination()
    return root / "bronze"


def minimal_source(spark, kafka: KafkaSettings, topic: str):  # noqa: ANN001, ANN201
    """The minimal documented Kafka source: bootstrap servers, topic, from the earliest offset."""
    return (spark.readStream.format("kafka").option("kafka.bootstrap.servers", kafka.bootstrap_servers)
            .option("subscribe", topic).option("startingOffsets", "earliest").load())  # fmt: skip


def drain_minimal(spark, kafka: KafkaSettings, topic: str, root: Path) -> Path:  # noqa: ANN001
    q = (
        minimal_source(spark, kafka, topic)
        .selectExpr("CAST(value AS STRING) AS value")
        .writeStream.format("delta")
        .option("checkpointLocation", str(root / "ckpt"))
        .trigger(availableNow=True)
        .start(str(root / "delta"))
    )
    q.awaitTermination()
    return root / "delta"


def bench_bronze(spark, kafka: KafkaSettings, topics: Topics, n: int, scratch: Path) -> Figure:  # noqa: ANN001
    topic, warm = topics.with_records("p2", n), topics.with_records("warm", 20_000 if common.WARM_UP else 5_000)
    memory = DriverMemory(spark)

    def run(drain: Callable[..., Path]) -> float:
        with scratch_dir(scratch) as root:
            with memory.sampled():
                start = time.perf_counter()
                table = drain(spark, kafka, topic, root)
                elapsed = time.perf_counter() - start
            expect_rows(spark, table, n, drain.__name__)
            return n / elapsed

    for drain in (drain_ours, drain_minimal):  # warm-up, even in quick runs: the first queries of a JVM are slow
        with scratch_dir(scratch) as root:
            drain(spark, kafka, warm, root)
    ours, base = timed_pairs(lambda: run(drain_ours), lambda: run(drain_minimal))
    return Figure.of_runs("P2", f"bronze drain / minimal Kafka->Delta job, {n:,} records backlog, 2 partitions",
                          ours, base, peak_rss_mb=memory.peak_mb, target=0.9)  # fmt: skip


def silver_drain(spark, bronze: str, root: Path, suite, silver: str | None = None) -> float:  # noqa: ANN001
    """Our silver query over a bronze table into `root` (silver at `silver` if given), once (AvailableNow);
    seconds taken."""
    p = pipeline(root, silver)
    resolved, tables = clickstream(), p.layout
    create_pipeline_tables(spark, p)
    checkpoint = tables.checkpoint("silver")
    writer = SilverBatchWriter(resolved.contract, resolved.spec, tables, checkpoint, suite, "bench.silver")
    start = time.perf_counter()
    q = (spark.readStream.format("delta").load(bronze).writeStream.foreachBatch(writer)
         .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())  # fmt: skip
    q.awaitTermination()
    return time.perf_counter() - start


def make_bronze(spark, kafka: KafkaSettings, topics: Topics, n: int, root: Path) -> str:  # noqa: ANN001
    return str(drain_ours(spark, kafka, topics.with_records(root.name, n), root))


def bench_quality(spark, kafka: KafkaSettings, topics: Topics, n: int, scratch: Path) -> Figure:  # noqa: ANN001
    """P3: the same bronze rows through silver with the full suite and with none."""
    suite = clickstream().suite
    bronze = make_bronze(spark, kafka, topics, n, scratch / "p3")
    memory = DriverMemory(spark)

    def run(with_suite) -> float:  # noqa: ANN001
        with scratch_dir(scratch) as root, memory.sampled():
            elapsed = silver_drain(spark, bronze, root, with_suite)
            expect_rows(spark, root / "silver", n, "silver")
            return n / elapsed

    if common.WARM_UP:
        run(suite), run(None)
    ours, base = timed_pairs(lambda: run(suite), lambda: run(None))
    rules = f"{len(suite.row_rules)} row + {len(suite.batch_rules)} batch rules"
    return Figure.of_runs("P3", f"silver with the clickstream suite ({rules}) / silver without checks, {n:,} records",
                          ours, base, peak_rss_mb=memory.peak_mb, target=0.9)  # fmt: skip


def typed_minimal(records):  # noqa: ANN001, ANN201
    """The minimal typed silver job's transformation of records with a `value` (bytes): `from_json` with the
    contract's schema, then `dropDuplicatesWithinWatermark` on the dedup key."""
    resolved = clickstream()
    spec, schema = resolved.spec, resolved.contract.spark_schema
    return (records.select(F.from_json(F.col("value").cast("string"), schema).alias("e")).select("e.*")
            .withWatermark(spec.event_time, "10 minutes").dropDuplicatesWithinWatermark(list(spec.dedup_keys)))  # fmt: skip


def drain_typed_minimal(spark, bronze: str, root: Path) -> float:  # noqa: ANN001
    """The minimal typed silver job over a bronze table, once (AvailableNow); seconds taken."""
    start = time.perf_counter()
    q = (typed_minimal(spark.readStream.format("delta").load(bronze))
         .writeStream.format("delta").option("checkpointLocation", str(root / "ckpt")).trigger(availableNow=True)
         .start(str(root / "silver")))  # fmt: skip
    q.awaitTermination()
    return time.perf_counter() - start


def start_minimal_pipeline(spark, kafka: KafkaSettings, topic: str, root: Path, trigger: dict) -> list:  # noqa: ANN001
    """The minimal typed silver job reading Kafka into root/silver (queried as `clickstream.silver`), with our three
    clickstream gold queries on that table: the pipeline as it would run with silver as cheap as the minimal job."""
    silver = str(root / "silver")
    spark.createDataFrame([], clickstream().contract.spark_schema).write.format("delta").save(silver)
    q = (typed_minimal(minimal_source(spark, kafka, topic)).writeStream.format("delta").queryName("clickstream.silver")
         .option("checkpointLocation", str(root / "ckpt")).trigger(**trigger).start(silver))  # fmt: skip
    return [q, *start_gold(spark, silver, root / "gold", trigger)]


def bench_typed(spark, kafka: KafkaSettings, topics: Topics, n: int, scratch: Path) -> Figure:  # noqa: ANN001
    """P5: our silver (no suite) / the minimal typed silver job, same bronze rows."""
    bronze = make_bronze(spark, kafka, topics, n, scratch / "p5")
    memory = DriverMemory(spark)

    def run(drain: Callable[[Path], float]) -> float:
        with scratch_dir(scratch) as root, memory.sampled():
            elapsed = drain(root)
            expect_rows(spark, root / "silver", n, "silver")
            return n / elapsed

    ours = lambda root: silver_drain(spark, bronze, root, None)  # noqa: E731
    minimal = lambda root: drain_typed_minimal(spark, bronze, root)  # noqa: E731
    if common.WARM_UP:
        run(ours), run(minimal)
    a, b = timed_pairs(lambda: run(ours), lambda: run(minimal))
    return Figure.of_runs("P5", f"silver without a suite / minimal typed silver job (from_json, "
                          f"dropDuplicatesWithinWatermark, append), {n:,} records", a, b,
                          peak_rss_mb=memory.peak_mb, target=0.5)  # fmt: skip


def start_gold(spark, silver: str, root: Path, trigger: dict, only: int | None = None) -> list:  # noqa: ANN001
    """The clickstream gold queries (or the `only`-th) over the silver table at `silver`, tables under `root`."""
    p = pipeline(root, silver)
    outputs = [o for i, o in enumerate(p.spec.outputs) if only is None or i == only]
    for o in outputs:
        create(spark, p.layout.output(o.name), output_schema(spark, p, o))
    return [start_output(spark, p, o, trigger) for o in outputs]


def bench_gold(spark, kafka: KafkaSettings, topics: Topics, n: int, scratch: Path) -> Figure:  # noqa: ANN001
    """P4: the clickstream gold stage (three stateful queries, MERGE) / a plain append of the same silver rows."""
    base_root = scratch / "p4-silver"
    silver_drain(spark, make_bronze(spark, kafka, topics, n, scratch / "p4"), base_root, None)
    silver = str(base_root / "silver")
    rows = count(spark, silver)
    memory = DriverMemory(spark)

    def gold(root: Path) -> None:
        for q in start_gold(spark, silver, root, AVAILABLE_NOW):
            q.awaitTermination()

    def append(root: Path) -> None:
        q = (spark.readStream.format("delta").load(silver).writeStream.format("delta")
             .option("checkpointLocation", str(root / "ckpt")).trigger(availableNow=True).start(str(root / "copy")))  # fmt: skip
        q.awaitTermination()

    def run(fn: Callable[[Path], None]) -> float:
        with scratch_dir(scratch) as root, memory.sampled():
            start = time.perf_counter()
            fn(root)
            return rows / (time.perf_counter() - start)

    if common.WARM_UP:
        run(gold), run(append)
    ours, base = timed_pairs(lambda: run(gold), lambda: run(append))
    alone = {}  # where the time goes: each gold query on its own, records/s (full runs only)
    for i, o in enumerate(clickstream().spec.outputs if common.WARM_UP else ()):
        alone[o.name] = round(run(lambda root, i=i: start_gold(spark, silver, root, AVAILABLE_NOW, only=i)[0].awaitTermination()))
    return Figure.of_runs("P4", f"gold (revenue, activity, sessions; update + MERGE) / plain append of the same "
                          f"{rows:,} silver rows", ours, base, peak_rss_mb=memory.peak_mb, target=0.5,
                          details={"alone_records_per_s": alone})  # fmt: skip
