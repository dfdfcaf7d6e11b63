"""The event log: one row per micro-batch of every query, and one per query start, stop and failure.

Spark's own `StreamingQueryListener` collects the rows: Spark calls it on its listener thread after a
micro-batch has committed, never on the query's own path. The rows wait in memory; a flusher thread appends
them to the `pipeline_events` Delta table (audit layer, one table for every pipeline of the environment) every
`event_log.flush_interval` and once more when the run ends: one commit per flush for all queries together, none
per micro-batch. Rows older than `event_log.retention` are deleted by the same thread when a run starts (beside
the queries, not before them: the delete takes ~8 s on a fresh JVM) and once a day while it runs. A run killed with SIGKILL
loses the rows not yet flushed (at most one interval's); the pipelines' own tables are not affected.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time

from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQueryListener

from pipelines.engine.delta_io import ensure_table
from pipelines.errors import error_summary
from pipelines.model import durations
from pipelines.model.config import Settings
from pipelines.model.layout import events_table
from pipelines.ops.maintenance import expire

log = logging.getLogger(__name__)
EXPIRE_EVERY_S = 24 * 3600  # a continuous run deletes rows past retention when it starts and once a day

EVENTS_SCHEMA = T.StructType(
    [
        T.StructField("event_time", T.TimestampType()),  # when the event happened (a batch: when it started)
        T.StructField("event", T.StringType()),  # started | batch | stopped | failed | gap_accepted
        T.StructField("pipeline", T.StringType()),
        T.StructField("query_name", T.StringType()),
        T.StructField("layer", T.StringType()),  # bronze | silver | gold (the query's table's layer)
        T.StructField("query_id", T.StringType()),  # stays the same across restarts (the checkpoint's id)
        T.StructField("run_id", T.StringType()),  # new at every start
        T.StructField("batch_id", T.LongType()),
        T.StructField("duration_ms", T.LongType()),  # the whole trigger: planning, reading, writing, commit
        T.StructField("durations_ms", T.MapType(T.StringType(), T.LongType())),  # by phase (Spark's durationMs)
        T.StructField("input_rows", T.LongType()),
        T.StructField("input_rows_per_second", T.DoubleType()),
        T.StructField("processed_rows_per_second", T.DoubleType()),
        T.StructField("watermark", T.StringType()),
        T.StructField("state_rows", T.LongType()),
        T.StructField("state_memory_bytes", T.LongType()),
        T.StructField("late_rows_dropped", T.LongType()),
        T.StructField("start_offsets", T.StringType()),  # the source's offsets as JSON, as Spark reports them
        T.StructField("end_offsets", T.StringType()),
        T.StructField("latest_offsets", T.StringType()),  # the newest offsets in Kafka when the batch was planned
        T.StructField("lag_records", T.LongType()),  # Kafka sources: latest - end, summed over partitions
        T.StructField("error", T.StringType()),  # failed: the error's first line; gap_accepted: the records skipped
        T.StructField("event_date", T.DateType()),
    ]
)


def query_labels(query_name: str | None) -> tuple[str | None, str]:
    """(pipeline, layer) of a lakepipe query name: `<pipeline>.bronze`, `<pipeline>.silver`, `<pipeline>.<layer>.<output>`."""
    parts = (query_name or "").split(".")
    if len(parts) == 2 and parts[1] in ("bronze", "silver"):
        return parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1]
    return None, "other"


def kafka_lag(end: str | None, latest: str | None) -> int | None:
    """Records between a Kafka source's end offsets and the latest ones (None for other sources)."""
    try:
        e, l = json.loads(end or "null"), json.loads(latest or "null")
        if not isinstance(e, dict) or not isinstance(l, dict):
            return None
        return sum(max(0, int(off) - int(e[t][p])) for t, parts in l.items() for p, off in parts.items())
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)


def _row(event: str, when: dt.datetime | None, name: str | None, query_id: object, run_id: object, **fields) -> dict:
    pipeline, layer = query_labels(name)
    when = when or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    row = dict.fromkeys(EVENTS_SCHEMA.fieldNames())
    ids = {k: None if v is None else str(v) for k, v in (("query_id", query_id), ("run_id", run_id))}
    row.update(event_time=when, event=event, pipeline=pipeline, query_name=name, layer=layer, event_date=when.date(),
               **ids, **fields)  # fmt: skip
    return row


def progress_row(p) -> dict:  # noqa: ANN001 - pyspark's StreamingQueryProgress
    """The event-log row of one micro-batch's progress report."""
    sources = list(p.sources or [])
    lags = [kafka_lag(s.endOffset, s.latestOffset) for s in sources]
    state = list(p.stateOperators or [])
    joined = lambda attr: json.dumps([getattr(s, attr) for s in sources]) if sources else None  # noqa: E731
    return _row(
        "batch", _time(p.timestamp), p.name, p.id, p.runId,
        batch_id=p.batchId, duration_ms=p.batchDuration, durations_ms={k: int(v) for k, v in (p.durationMs or {}).items()},
        input_rows=p.numInputRows, input_rows_per_second=_number(p.inputRowsPerSecond),
        processed_rows_per_second=_number(p.processedRowsPerSecond), watermark=(p.eventTime or {}).get("watermark"),
        state_rows=sum(s.numRowsTotal for s in state) if state else None,
        state_memory_bytes=sum(s.memoryUsedBytes for s in state) if state else None,
        late_rows_dropped=sum(s.numRowsDroppedByWatermark for s in state) if state else None,
        start_offsets=joined("startOffset"), end_offsets=joined("endOffset"), latest_offsets=joined("latestOffset"),
        lag_records=None if not lags or None in lags else sum(lags),
    )  # fmt: skip


def _number(x: float | None) -> float | None:
    return None if x is None or x != x else float(x)  # NaN (no input) as null


class EventLog(StreamingQueryListener):
    """Collects the rows (listener callbacks) and appends them to the table (`flush`, or the flusher thread)."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.table = events_table(settings)
        self.interval = durations.seconds(settings.event_log.flush_interval)
        self.retention = durations.seconds(settings.event_log.retention)
        self._rows: list[dict] = []
        self._names: dict[str, str] = {}  # query id -> name, for the termination event (which has no name)
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # listener callbacks (Spark's listener thread)
    def onQueryStarted(self, event) -> None:  # noqa: ANN001, N802
        with self._lock:
            self._names[str(event.id)] = event.name
            self._running.add(str(event.runId))
        self._add(_row("started", _time(event.timestamp), event.name, event.id, event.runId))

    def onQueryProgress(self, event) -> None:  # noqa: ANN001, N802
        self._add(progress_row(event.progress))

    def onQueryIdle(self, event) -> None:  # noqa: ANN001, N802
        pass  # an idle trigger is no micro-batch

    def onQueryTerminated(self, event) -> None:  # noqa: ANN001, N802
        error = error_summary(event.exception) if event.exception else None
        with self._lock:
            name = self._names.get(str(event.id))
        self._add(_row("failed" if error else "stopped", None, name, event.id, event.runId, error=error))
        with self._lock:
            self._running.discard(str(event.runId))

    def gap_accepted(self, query_name: str, gap: str) -> None:
        """A run's --from-earliest-available: the records of the query's topic it reads past, never to be read."""
        self._add(_row("gap_accepted", None, query_name, None, None, error=gap))

    def _add(self, row: dict) -> None:
        with self._lock:
            self._rows.append(row)

    # the table
    def start(self) -> EventLog:
        """Create the table, register the listener and start the flusher (which first deletes rows past retention)."""
        ensure_table(self.spark, self.table.path, EVENTS_SCHEMA, self.table.partition_by)
        self.spark.streams.addListener(self)
        self._thread = threading.Thread(target=self._run, name="event-log-flusher", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_expiry = time.monotonic()
        while True:
            if time.monotonic() >= next_expiry:
                try:
                    expire(self.spark, self.table, "event_time", self.retention)
                    next_expiry = time.monotonic() + EXPIRE_EVERY_S
                except Exception as exc:  # noqa: BLE001 - tried again at the next flush; the pipeline runs on
                    log.warning("event log: deleting rows past retention from %s failed (%s)", self.table.path, exc)
            if self._stop.wait(self.interval):
                return
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the rows stay for the next flush; the pipeline runs on
                log.warning("event log: flush to %s failed (%s); retrying in %ss", self.table.path, exc, self.interval)

    def flush(self) -> int:
        """Append the rows collected so far (one Delta commit); how many."""
        with self._flush_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                names = EVENTS_SCHEMA.fieldNames()
                frame = self.spark.createDataFrame([tuple(r[f] for f in names) for r in rows], EVENTS_SCHEMA)
                frame.write.format("delta").mode("append").save(self.table.path)
            except Exception:
                with self._lock:
                    self._rows[:0] = rows
                raise
            return len(rows)

    def stop(self, wait_s: float = 10.0) -> None:
        """Wait (up to `wait_s`) for the stopped queries' last events, unregister, flush what is left."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        try:
            self.spark.streams.removeListener(self)
        finally:
            self.flush()
