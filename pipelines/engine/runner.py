"""Run pipelines: start the bronze, silver and gold queries of each, continuously or once.

- Continuous: all queries run together with a processing-time trigger until interrupted (Ctrl-C or
  SIGTERM stop them cleanly) or until one fails, which stops the others and names the failed query.
- Once (`--once`): Trigger.AvailableNow, stage by stage (bronze, then silver, then gold), so one run
  takes everything that is in Kafka now all the way to gold, then exits.
Every query has its own checkpoint under the lake root, so a run can be killed at any moment and restarted.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Sequence
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.errors import StreamingQueryException
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StructType

from pipelines.platform import kafka_admin
from pipelines.engine.bronze import BRONZE_SCHEMA, PARTITION_BY, start_bronze
from pipelines.model.config import Settings
from pipelines.model.contract import Contract
from pipelines.engine.delta_io import ensure_table, upsert_nonempty
from pipelines.errors import ConfigError, PipelineFailedError
from pipelines.model.layout import PipelineLayout, pipeline_layout
from pipelines.quality.suite import QualitySuite
from pipelines.engine.gold.rebuild import RebuildWriter
from pipelines.engine.silver import ensure_silver_tables, start_silver
from pipelines.model.spec import GoldSpec, PipelineSpec, load_spec, resolve_spec


@dataclass(frozen=True)
class Pipeline:
    """A pipeline ready to run: its spec, contract, gold functions, topic and table layout."""

    spec: PipelineSpec
    contract: Contract
    functions: Mapping[str, Callable[..., DataFrame]]
    topic: str
    watermark: str
    layout: PipelineLayout
    sources: Mapping[str, PipelineLayout]  # rebuild outputs: gold name -> layout of the pipeline read
    suite: QualitySuite | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def gold_rows(self, g: GoldSpec, events: DataFrame) -> DataFrame:
        return self.functions[g.name](events, **g.options)

    def source_layout(self, g: GoldSpec) -> PipelineLayout:
        """The layout of the pipeline whose silver rows output `g` reads."""
        return self.sources[f"{g.name}:{g.source}"] if g.source else self.layout

    def lookup_paths(self, g: GoldSpec) -> dict[str, str]:
        """Argument -> table path of each lookup of rebuild output `g`."""
        out = {}
        for arg, ref in g.lookups.items():
            pipeline, table = ref.split(".")
            layout = self.layout if pipeline == self.name else self.sources[f"{g.name}:{pipeline}"]
            out[arg] = layout.table(table).path
        return out


@dataclass
class QueryMetrics:
    """What one query did in a run, summed over its micro-batches.

    `late_rows_dropped` is Spark's count of rows older than the watermark that a stateful operator left
    out. For per-event state (sessions) that is the number of late events; windowed aggregations drop
    late rows after a partial aggregation, so theirs counts late (window, key) groups, at most the events.
    """

    batches: int = 0
    input_rows: int = 0
    late_rows_dropped: int = 0


@dataclass
class RunResult:
    queries: dict[str, QueryMetrics] = field(default_factory=dict)
    stage_seconds: list[float] = field(default_factory=list)  # --once: wall time of each stage, in order

    def to_dict(self) -> dict:
        return {name: vars(m) for name, m in self.queries.items()}


def load_pipeline(settings: Settings, name: str) -> Pipeline:
    """Load and check spec `name` (and its contract and gold functions) for this environment."""
    resolved = resolve_spec(settings.spec_path(name), settings.schemas_dir)
    spec = resolved.spec
    layout = layout_of(settings, spec)
    topic = settings.pipeline(name).topic or spec.topic  # the environment may override the topic
    watermark = spec.watermark or settings.streaming.watermark
    sources = {}
    for i, g in enumerate(spec.gold):
        refs = [(f"gold[{i}].source", g.source)] if g.source else []
        refs += [(f"gold[{i}].lookups.{arg}", ref.split(".")[0]) for arg, ref in g.lookups.items()]
        for key, other in refs:
            if other == name:
                other_layout = layout
            else:
                try:
                    other_layout = layout_of(settings, load_spec(settings.spec_path(other)))
                except ConfigError:
                    raise ConfigError(f"{resolved.source}: key '{key}' names pipeline '{other}', which has no spec") from None
            sources[f"{g.name}:{other}"] = other_layout
        for arg, ref in g.lookups.items():
            if sources[f"{g.name}:{ref.split('.')[0]}"].table(ref.split(".")[1]) is None:
                raise ConfigError(f"{resolved.source}: key 'gold[{i}].lookups.{arg}' names '{ref}', which is no table")
    return Pipeline(spec, resolved.contract, resolved.functions, topic, watermark, layout, sources, resolved.suite)


def layout_of(settings: Settings, spec: PipelineSpec) -> PipelineLayout:
    return pipeline_layout(settings, spec.name, spec.events_table, tuple((g.name, g.layer) for g in spec.gold))


def topic_of(settings: Settings, name: str) -> str:
    """The topic pipeline `name` reads in this environment."""
    return settings.pipeline(name).topic or load_spec(settings.spec_path(name)).topic


def check_all(settings: Settings) -> dict[str, str | None]:
    """Load every spec, contract and gold function without starting Spark streams: name -> problem or None."""
    out: dict[str, str | None] = {}
    for name in sorted(set(settings.pipeline_names()) | set(settings.file.pipelines)):
        try:
            load_pipeline(settings, name)
            out[name] = None
        except ConfigError as exc:
            out[name] = str(exc)
    return out


def prepare_tables(spark: SparkSession, settings: Settings, p: Pipeline, _done: set[str] | None = None) -> None:
    """Create every table of `p` (empty) so that streams, queries and `lakepipe tables` can start at once.

    Pipelines that `p`'s rebuild outputs read are prepared first.
    """
    done = set() if _done is None else _done
    done.add(p.name)
    for other in sorted({key.split(":")[1] for key in p.sources} - done):
        prepare_tables(spark, settings, load_pipeline(settings, other), done)
    ensure_table(spark, p.layout.bronze.path, BRONZE_SCHEMA, PARTITION_BY)
    ensure_silver_tables(spark, p.contract, p.spec, p.layout)
    silver = spark.readStream.format("delta").load(p.layout.silver.path)
    for g in p.spec.gold:
        if g.mode == "rebuild":
            rows = spark.read.format("delta").load(p.source_layout(g).silver.path)
            lookups = {arg: spark.read.format("delta").load(path) for arg, path in p.lookup_paths(g).items()}
            schema = p.functions[g.name](rows, **lookups, **g.options).schema
        else:
            schema = p.gold_rows(g, silver).schema
        fields = [f for f in schema.fields if f.name != g.delete_flag]
        ensure_table(spark, p.layout.gold_table(g.name).path, StructType(fields))


def run(spark: SparkSession, settings: Settings, names: Sequence[str], once: bool) -> RunResult:
    result = RunResult()
    if once:
        for stage in _stages(spark, settings, names, {"availableNow": True}):
            start = time.perf_counter()
            queries = [start_query() for start_query in stage]
            _await_all(queries, result)
            result.stage_seconds.append(round(time.perf_counter() - start, 3))
    else:
        trigger = {"processingTime": settings.streaming.trigger_interval}
        _await_until_stopped(spark, start_all(spark, settings, names, trigger), result)
    return result


def start_all(spark: SparkSession, settings: Settings, names: Sequence[str], trigger: dict) -> list[StreamingQuery]:
    """Start every query of the pipelines `names` with `trigger` and return them (the caller stops them)."""
    return [start() for stage in _stages(spark, settings, names, trigger) for start in stage]


def _stages(
    spark: SparkSession, settings: Settings, names: Sequence[str], trigger: dict
) -> list[list[Callable[[], StreamingQuery]]]:
    """The queries of the pipelines `names`, by stage (bronze, silver, gold, gold reading other gold), unstarted."""
    pipelines = [load_pipeline(settings, n) for n in names]
    for p in pipelines:
        kafka_admin.require_topic(settings.kafka, p.topic)
        prepare_tables(spark, settings, p)
    return [
        [lambda p=p: _bronze(spark, settings, p, trigger) for p in pipelines],
        [lambda p=p: _silver(spark, p, trigger) for p in pipelines],
        [lambda p=p, g=g: start_gold(spark, p, g, trigger) for p in pipelines for g in p.spec.gold if not g.derived],
        [lambda p=p, g=g: start_gold(spark, p, g, trigger) for p in pipelines for g in p.spec.gold if g.derived],
    ]


def _bronze(spark: SparkSession, settings: Settings, p: Pipeline, trigger: dict) -> StreamingQuery:
    layout = p.layout
    name = f"{p.name}.bronze"
    return start_bronze(spark, settings.kafka, p.topic, layout.bronze.path, layout.checkpoint("bronze"), trigger, name)


def _silver(spark: SparkSession, p: Pipeline, trigger: dict) -> StreamingQuery:
    return start_silver(spark, p.contract, p.spec, p.layout, trigger, f"{p.name}.silver", p.suite)


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


def _await_all(queries: list[StreamingQuery], result: RunResult) -> None:
    try:
        for q in queries:
            try:
                q.awaitTermination()
            except StreamingQueryException:
                pass  # reported by _check, with the query's name
            raise_if_failed(q, queries)
    finally:
        for q in queries:
            _collect(q, result)
            if q.isActive:
                q.stop()


def _await_until_stopped(spark: SparkSession, queries: list[StreamingQuery], result: RunResult) -> None:
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        while True:
            for q in queries:
                raise_if_failed(q, queries)
            spark.streams.awaitAnyTermination(timeout=1)
            spark.streams.resetTerminated()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for q in queries:
            _collect(q, result)
            if q.isActive:
                q.stop()


def raise_if_failed(q: StreamingQuery, queries: list[StreamingQuery]) -> None:
    """Raise PipelineFailedError naming `q` if it failed (after stopping the others)."""
    if q.isActive:
        return
    exc = q.exception()
    if exc is None:
        return
    for other in queries:
        if other.isActive:
            other.stop()
    raise PipelineFailedError(f"query '{q.name}' failed: {error_summary(getattr(exc, 'desc', None) or str(exc))}")


def error_summary(text: str) -> str:
    """One line for a query's error: a Python worker's own exception line if there is one, else the first."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    python_errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln)]
    line = python_errors[-1] if python_errors else (lines[0] if lines else "unknown error")
    return re.sub(r"\s*SQLSTATE: \w+", "", line)[:500]


def _collect(q: StreamingQuery, result: RunResult) -> None:
    m = result.queries.setdefault(q.name, QueryMetrics())
    for progress in q.recentProgress:
        m.batches += 1
        m.input_rows += progress.numInputRows
        m.late_rows_dropped += sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt
