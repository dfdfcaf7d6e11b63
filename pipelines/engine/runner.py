"""Run pipelines: start the bronze, silver and gold queries of each, continuously or once.

With `streaming.bronze_with_silver` (the default) one query, named `<pipeline>.silver`, reads Kafka and writes
both bronze and silver (`pipelines.engine.bronze_silver`); the bronze stage then has no query of its own.

- Continuous: all queries run together with a processing-time trigger until interrupted (Ctrl-C or
  SIGTERM stop them cleanly) or until one fails, which stops the others and names the failed query.
- Once (`--once`): Trigger.AvailableNow, stage by stage (bronze, then silver, then gold), so one run
  takes everything that is in Kafka now all the way to gold, then exits.
Every query has its own checkpoint under the lake root, so a run can be killed at any moment and restarted.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pyspark.errors import StreamingQueryException
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from pipelines.engine import bronze_silver, kafka_gaps
from pipelines.engine.bronze import start_bronze
from pipelines.engine.gold.outputs import inline_rebuilds, retire_inline_queries, start_output
from pipelines.engine.pii import Privacy, privacy_of
from pipelines.engine.silver import SilverBatchWriter, start_silver
from pipelines.engine.tables import apply_file_properties, create_tables
from pipelines.errors import (
    ChangeRefusedError,
    CheckpointDamagedError,
    DiskFullError,
    KafkaUnreachableError,
    PipelineFailedError,
    disk_full_message,
    error_summary,
)
from pipelines.model.config import KafkaSettings, Settings
from pipelines.model.layout import Table
from pipelines.model.project import Pipeline, Project
from pipelines.ops import checkpoints
from pipelines.ops import plan as change_plan
from pipelines.ops.catalog import register
from pipelines.ops.event_log import EventLog
from pipelines.ops.run_marker import marked
from pipelines.platform import kafka_admin
from pipelines.platform.session import session_confs

log = logging.getLogger("lakepipe.runner")


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
    registered: list[str] = field(default_factory=list)  # catalog names registered (or pointed again) at start
    gaps: dict[str, list[kafka_gaps.Gap]] = field(default_factory=dict)  # per pipeline: accepted by --from-earliest-available
    not_stopped: dict[str, str] = field(default_factory=dict)  # query -> why it did not stop within STOP_TIMEOUT_S

    def to_dict(self) -> dict:
        return {name: vars(m) for name, m in self.queries.items()}


def run(
    spark: SparkSession, project: Project, names: Sequence[str], once: bool, from_earliest_available: bool = False,
    say: Callable[[str], None] | None = None,
) -> RunResult:
    """Run the pipelines `names`; every micro-batch, start, stop and failure goes to the event log (if enabled).

    One run per pipeline at a time (RunLockedError otherwise). Records a bronze query has not read that are gone
    from Kafka stop the run before it starts (OffsetsGoneError) unless `from_earliest_available` accepts them.
    `say` gets the lines a person watching a continuous run should read (the broker not answering, and again).
    """
    with marked([project.pipeline(n).layout.checkpoints for n in names], spark.sparkContext.applicationId):
        return _run(spark, project, names, once, from_earliest_available, say)  # `lakepipe status` sees them, and since when


def _run(
    spark: SparkSession, project: Project, names: Sequence[str], once: bool, accept_gaps: bool,
    say: Callable[[str], None] | None,
) -> RunResult:
    result = RunResult()
    for n in names:  # before anything reads a checkpoint (the gap check below, Spark)
        p = project.pipeline(n)
        for damage in checkpoints.pipeline_damage(p.layout.checkpoints, project.settings.tables_root)[:1]:
            raise CheckpointDamagedError(checkpoints.describe(n, damage))
        for verdict in [v for v in change_plan.plan(p) if v.verdict in change_plan.BLOCKING][:1]:
            raise ChangeRefusedError(f"{n}: the spec or contract changed: {verdict.line()} (`lakepipe plan {n}` "
                                     "lists every table)")  # fmt: skip
    for n in names:
        p = project.pipeline(n)
        found = kafka_gaps.check(project.settings.kafka, n, p.topic, p.layout.checkpoint("bronze"), accept_gaps)
        if found:
            result.gaps[n] = found
    events = EventLog(spark, project.settings).start() if project.settings.event_log.enabled else None
    try:
        if events is not None:
            for n, found in result.gaps.items():
                events.gap_accepted(f"{n}.bronze", kafka_gaps.describe(found))
        _bound_stops(spark)
        trigger = {"availableNow": True} if once else {"processingTime": project.settings.streaming.trigger_interval}
        stages = _stages(spark, project, names, trigger, set(result.gaps))  # creates the tables
        result.registered = register(spark, project.settings, _tables(project, names))
        for n in names:  # what this run builds the checkpoints with, for the next `lakepipe plan`
            change_plan.record(project.pipeline(n))
        if once:
            for stage in stages:
                start = time.perf_counter()
                queries = [start_query() for start_query in stage]
                _await_all(queries, result)
                result.stage_seconds.append(round(time.perf_counter() - start, 3))
        else:
            watch = BrokerWatch(project.settings.kafka, say) if say is not None else None
            _await_until_stopped(spark, [start() for stage in stages for start in stage], result, watch)
    finally:
        if events is not None:
            _stop_event_log(events, failing=sys.exc_info()[1] is not None)
    return result


def _stop_event_log(events: EventLog, failing: bool) -> None:
    """Flush the event log's last rows. When the run is already failing, a failure here (the same full disk, say)
    is logged rather than raised in place of the run's own error."""
    try:
        events.stop()
    except Exception as exc:  # noqa: BLE001
        if not failing:
            raise
        log.warning("event log: its last rows were not written (%s)", error_summary(str(exc)))


def _tables(project: Project, names: Sequence[str]) -> list[Table]:
    """The tables of the pipelines `names` and of those they read, then the shared audit tables."""
    mine = {p for n in names for p in (n, *project.pipeline(n).source_pipelines())}
    return [t for t in project.tables if t.pipeline in mine or t.pipeline == "*"]


def start_all(spark: SparkSession, project: Project, names: Sequence[str], trigger: dict) -> list[StreamingQuery]:
    """Start every query of the pipelines `names` with `trigger` and return them (the caller stops them)."""
    return [start() for stage in _stages(spark, project, names, trigger) for start in stage]


def _stages(
    spark: SparkSession, project: Project, names: Sequence[str], trigger: dict, past_gaps: set[str] = frozenset()
) -> list[list[Callable[[], StreamingQuery]]]:
    """The queries of the pipelines `names`, by stage (bronze, silver, outputs, outputs reading other tables), unstarted;
    with bronze and silver in one query, it is in the silver stage."""
    pipelines = [project.pipeline(n) for n in names]
    protect = {p.name: privacy_of(p, project.settings) for p in pipelines}  # a missing pii salt: before anything starts
    for p in pipelines:
        kafka_admin.require_topic(project.settings.kafka, p.topic)
        apply_file_properties(spark, p, create_tables(spark, project, p))
        retire_inline_queries(spark, p)
    # before a bronze query runs: where a silver query reading bronze starts after bronze and silver in one query
    sources = {p.name: bronze_silver.to_two_queries(spark, p.name, p.layout.checkpoints, p.layout.checkpoint("bronze"),
                                                    p.layout.bronze.path) for p in pipelines if not p.bronze_with_silver}  # fmt: skip
    return [
        [lambda p=p: _bronze(spark, project.settings, p, trigger, p.name in past_gaps) for p in pipelines
         if not p.bronze_with_silver],
        [lambda p=p: _silver(spark, project.settings, p, trigger, protect[p.name], p.name in past_gaps, sources.get(p.name))
         for p in pipelines],
        [lambda p=p, o=o: start_output(spark, p, o, trigger) for p in pipelines for o in p.spec.outputs
         if not o.derived and not o.inline],  # fmt: skip
        [lambda p=p, o=o: start_output(spark, p, o, trigger) for p in pipelines for o in p.spec.outputs if o.derived],
    ]


def _kafka(settings: Settings, past_gap: bool) -> KafkaSettings:
    return dataclasses.replace(settings.kafka, fail_on_data_loss=False) if past_gap else settings.kafka


def _bronze(spark: SparkSession, settings: Settings, p: Pipeline, trigger: dict, past_gap: bool = False) -> StreamingQuery:
    layout = p.layout
    name = f"{p.name}.bronze"
    with session_confs(spark, p.query_conf(), strict=False):
        return start_bronze(spark, _kafka(settings, past_gap), p.topic, layout.bronze.path, layout.checkpoint("bronze"),
                            trigger, name)  # fmt: skip


def _silver(
    spark: SparkSession, settings: Settings, p: Pipeline, trigger: dict, privacy: Privacy, past_gap: bool = False,
    source: dict | None = None,
) -> StreamingQuery:  # fmt: skip
    """The silver query: reading Kafka and writing bronze too (`bronze_with_silver`), else reading bronze from
    `source` (`bronze_silver.to_two_queries`). Either takes over where the other mode left off."""
    layout, name = p.layout, f"{p.name}.silver"
    if p.bronze_with_silver:
        if bronze_silver.needs_catch_up(spark, layout.checkpoints, layout.checkpoint("bronze")):
            _catch_up(spark, settings, p, privacy, past_gap)
        bronze_silver.mark_one_query(spark, layout.checkpoints)
        checkpoint = layout.checkpoint("bronze")
        writer = SilverBatchWriter(p.contract, p.spec, layout, checkpoint, p.suite, name, inline_rebuilds(p), privacy)
        with session_confs(spark, p.query_conf(), strict=False):
            return bronze_silver.start_bronze_silver(spark, _kafka(settings, past_gap), p.topic, layout.bronze.path,
                                                     checkpoint, trigger, name, writer)  # fmt: skip
    source = source or {}
    with session_confs(spark, p.query_conf(), strict=False):
        return start_silver(spark, p.contract, p.spec, layout, trigger, name, p.suite, inline_rebuilds(p), privacy,
                            p.max_bytes_per_trigger, source.get("from_version"), bronze_silver.bronze_filter(source))  # fmt: skip


def _catch_up(spark: SparkSession, settings: Settings, p: Pipeline, privacy: Privacy, past_gap: bool) -> None:
    """Before bronze and silver run as one query: finish a bronze micro-batch a bronze query left unfinished, then
    let silver take what bronze holds and it has not, both AvailableNow."""
    once = {"availableNow": True}
    if bronze_silver.unfinished_batch(spark, p.layout.checkpoint("bronze")):
        _await_all([_bronze(spark, settings, p, once, past_gap)], RunResult())
    two = dataclasses.replace(p, bronze_with_silver=False)
    _await_all([_silver(spark, settings, two, once, privacy, source=bronze_silver.read_source(spark, p.layout.checkpoints))],
               RunResult())  # fmt: skip


STOP_TIMEOUT_S = 30  # a query's stop waits this long for its running micro-batch (Spark's default: for ever)


def _bound_stops(spark: SparkSession) -> None:
    """Give every query this session starts a bounded stop, unless the session was given one already: a query
    blocked in a call to an unreachable broker would otherwise hold Ctrl-C for minutes."""
    if spark.conf.get("spark.sql.streaming.stopTimeout", "0") in ("0", "0ms", "0s"):
        try:
            spark.conf.set("spark.sql.streaming.stopTimeout", f"{STOP_TIMEOUT_S}s")
        except Exception:  # noqa: BLE001 - a platform that lets no one set it (serverless) keeps its own
            pass


def _stop(q: StreamingQuery, result: RunResult) -> None:
    """Stop `q` if it runs; one that does not stop in time (or fails while stopping) is named in the result, and
    its next run resumes from its checkpoint like after any crash."""
    try:
        if q.isActive:
            q.stop()
    except Exception as exc:  # noqa: BLE001 - Spark's TimeoutException and any error at stop: reported, not raised
        result.not_stopped[q.name] = error_summary(str(exc))


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
            _stop(q, result)


def _await_until_stopped(
    spark: SparkSession, queries: list[StreamingQuery], result: RunResult, watch: BrokerWatch | None = None
) -> None:
    """Until Ctrl-C or SIGTERM (or a query fails): then stop every query. The signals only set a flag, read once a
    second between calls to Spark: a KeyboardInterrupt raised inside a py4j call (PySpark's own SIGINT handler
    does that) breaks the gateway's connection and prints tracebacks. A second Ctrl-C while the queries stop
    raises KeyboardInterrupt at once."""
    asked = threading.Event()

    def ask_to_stop(*_: object) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = {s: signal.signal(s, ask_to_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not asked.is_set():
            for q in queries:
                raise_if_failed(q, queries)
            try:
                spark.streams.awaitAnyTermination(timeout=1)
            except StreamingQueryException:  # a query failed since the check above: the next check names it
                pass
            spark.streams.resetTerminated()
            if watch is not None:
                watch.check()
    except KeyboardInterrupt:
        pass
    finally:
        for q in queries:
            _collect(q, result)
            _stop(q, result)
        for s, handler in previous.items():
            signal.signal(s, handler)


class BrokerWatch:
    """Says once when the broker stops answering during a continuous run, and once when it answers again.

    Spark's Kafka source rides out an outage (its consumers retry) but says nothing a person would read: the
    run waits, and this makes that visible. Checks every `every_s` seconds with a short admin call."""

    def __init__(self, kafka: KafkaSettings, say: Callable[[str], None], every_s: float = 10.0) -> None:
        self.kafka, self.say, self.every_s = kafka, say, every_s
        self._next = time.monotonic() + every_s
        self._last_answer = time.time()
        self._down_since: float | None = None

    def check(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self.every_s
        answers = kafka_admin.is_reachable(self.kafka, timeout=2)
        servers = self.kafka.bootstrap_servers
        if answers and self._down_since is not None:
            self.say(f"Kafka at {servers} answers again (no answer for {time.time() - self._down_since:.0f} s); "
                     "the run reads on from where it was")  # fmt: skip
            self._down_since = None
        elif not answers and self._down_since is None:
            self._down_since = self._last_answer
            since = time.strftime("%H:%M:%S", time.localtime(self._last_answer))
            self.say(f"Kafka at {servers} has not answered since {since}: the run waits for it and reads on when "
                     "it is back (Ctrl-C stops the run; nothing is lost either way)")  # fmt: skip
        if answers:
            self._last_answer = time.time()


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
    text = getattr(exc, "desc", None) or str(exc)
    if (full := disk_full_message(f"{text}\n{getattr(exc, '_stackTrace', '')}")) is not None:
        raise DiskFullError(f"query '{q.name}': {full}")
    summary = error_summary(text)
    reads_kafka = q.name.endswith((".bronze", ".silver"))  # silver: with bronze in one query
    gone = kafka_gaps.data_loss_error(q.name.split(".")[0], summary) if reads_kafka else None
    if gone is None and reads_kafka and "org.apache.kafka.common.errors.TimeoutException" in summary:
        raise KafkaUnreachableError(
            f"query '{q.name}' stopped: Kafka did not answer within the Kafka source's retries "
            f"({summary.split('TimeoutException: ')[-1]}): start the broker (`lakepipe up`) or fix "
            "kafka.bootstrap_servers, then run again: the run resumes from its checkpoints, nothing lost"
        )
    raise gone or PipelineFailedError(f"query '{q.name}' failed: {summary}")


def _collect(q: StreamingQuery, result: RunResult) -> None:
    m = result.queries.setdefault(q.name, QueryMetrics())
    for progress in q.recentProgress:
        m.batches += 1
        m.input_rows += progress.numInputRows
        m.late_rows_dropped += sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)


