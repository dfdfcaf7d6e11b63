"""`lakepipe status`: whether each pipeline runs (and since when), how far its bronze is behind Kafka, and per table
its last commit, its query's last micro-batch (when, how long), its newest event and how far behind it is.

Read from the broker (end offsets) and from the lake itself (the bronze query's checkpoint, the tables' Delta
logs), never from a running application, so it answers while the pipeline is down too. The lag of a partition
is its end offset minus the end offset of the bronze query's last committed micro-batch (before the first one:
minus where the query will start, the log's start with `starting_offsets: earliest`, else the end).
Local lakes only for now: on an object store the checkpoint and logs need Hadoop's file system, which `status`
does not start.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.engine.delta_log import commit_times, file_versions, newest_value_ms
from pipelines.errors import CheckpointDamagedError, LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import Pipeline
from pipelines.ops.run_marker import RunState, run_state
from pipelines.platform import kafka_admin


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    end: int  # the offset the next record will get
    committed: int  # where bronze's next micro-batch starts
    lag: int


@dataclass(frozen=True)
class TableState:
    name: str
    layer: str
    last_commit_ms: float | None  # None: the table does not exist yet
    age_s: float | None
    behind_s: float | None = None  # how long the oldest source data it has not taken has waited (0: caught up)
    slo_s: float | None = None  # the spec's objective for behind_s
    last_batch_age_s: float | None = None  # since the end of the last micro-batch of the query writing it
    last_batch_s: float | None = None  # that micro-batch's duration (from writing its offsets to its commit)
    newest_event_age_s: float | None = None  # now minus the newest event time it holds (bronze: Kafka timestamp)

    @property
    def breached(self) -> bool:
        return self.slo_s is not None and self.behind_s is not None and self.behind_s > self.slo_s


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    topic: str
    partitions: tuple[PartitionLag, ...]
    tables: tuple[TableState, ...]
    lag_slo: int | None = None
    run: RunState = RunState(False)
    now_ms: float = 0.0

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def breaches(self) -> list[str]:
        """One phrase per broken objective of the spec's `slo`."""
        out = [f"lag {self.lag:,} records > {self.lag_slo:,}"] if self.lag_slo is not None and self.lag > self.lag_slo else []
        return out + [f"{t.name} behind by {_duration(t.behind_s)} > {_duration(t.slo_s)}" for t in self.tables if t.breached]

    def to_dict(self) -> dict:
        return {"pipeline": self.name, "topic": self.topic, "running": self.run.phrase(self.now_ms), "lag_records": self.lag,
                "slo_breaches": self.breaches, **asdict(self)}  # fmt: skip

    def line(self) -> str:
        parts = ", ".join(f"p{p.partition} {p.lag:,}" for p in self.partitions)
        ages = ", ".join(f"{t.name} {_age(t.age_s)}" for t in self.tables)
        batches = ", ".join(f"{t.name} {_age(t.last_batch_age_s)} ({t.last_batch_s:.1f} s)" for t in self.tables
                            if t.last_batch_age_s is not None)  # fmt: skip
        newest = ", ".join(f"{t.name} {_age(t.newest_event_age_s)}" for t in self.tables if t.newest_event_age_s is not None)
        behind = ", ".join(f"{t.name} {_duration(t.behind_s)}" for t in self.tables if t.behind_s)
        has_slo = self.lag_slo is not None or any(t.slo_s is not None for t in self.tables)
        verdict = ("; SLO breached: " + "; ".join(self.breaches)) if self.breaches else ("; SLO met" if has_slo else "")
        return (f"{self.name}: {self.run.phrase(self.now_ms)}; {self.topic} lag {self.lag:,} records ({parts}); "
                f"last commit: {ages}{'; last batch: ' + batches if batches else ''}"
                f"{'; newest event: ' + newest if newest else ''}{'; behind: ' + behind if behind else ''}{verdict}")  # fmt: skip


def local_path(path: str) -> Path | None:
    """The local file system path of a lake path, or None when it lives elsewhere (s3a://, abfss://, dbfs:/...)."""
    if path.startswith("file:"):
        return Path(path.removeprefix("file:"))
    return None if "://" in path or path.startswith("dbfs:") else Path(path)


def checkpoint_source_offset(checkpoint: str) -> dict | None:
    """The (first) source's offset at the end of the last committed micro-batch of the query with this checkpoint,
    i.e. where its next batch starts (None before its first): {topic: {partition: offset}} for Kafka; for a
    Delta table its `reservoirVersion` and `index`."""
    root = local_path(checkpoint)
    if root is None:
        raise LakepipeError(f"lakepipe status reads local lakes only; {checkpoint} is not on this machine")
    commits = [int(f.name) for f in (root / "commits").glob("*") if f.name.isdigit()] if (root / "commits").is_dir() else []
    if not commits:
        return None
    path = root / "offsets" / str(max(commits))
    try:
        return json.loads(path.read_text().splitlines()[2])
    except (ValueError, IndexError):
        raise CheckpointDamagedError(f"checkpoint file {path} is damaged: `lakepipe repair` says what can be done") from None


def committed_offsets(checkpoint: str) -> dict[str, dict[int, int]] | None:
    """{topic: {partition: offset}} where the next micro-batch of the Kafka query with this checkpoint starts."""
    offset = checkpoint_source_offset(checkpoint)
    return None if offset is None else {t: {int(p): int(o) for p, o in parts.items()} for t, parts in offset.items()}


def waiting_since(checkpoint: str, source: str) -> float | None:
    """When the oldest commit of `source` that added data and that the query with `checkpoint` has not taken was
    written (epoch ms); None when it has taken everything."""
    path = local_path(source)
    if path is None or not path.is_dir():
        return None
    offset = checkpoint_source_offset(checkpoint)
    if offset is None:
        taken = -1
    else:  # index -1: the batch ended before that version; else within or at the end of it
        taken = offset["reservoirVersion"] - (1 if offset.get("index", -1) == -1 else 0)
    pending = {v for v in file_versions(str(path)).values() if v > taken}
    times = commit_times(str(path))
    return min((times[v] for v in pending if v in times), default=None)


def last_batch(checkpoint: str) -> tuple[float, float] | None:
    """(when the last committed micro-batch of the query with this checkpoint ended, epoch ms; how long it took, s):
    the times its commit and offsets files were written. None before its first."""
    root = local_path(checkpoint)
    commits = [int(f.name) for f in (root / "commits").glob("*") if f.name.isdigit()] if root and (root / "commits").is_dir() else []
    if not commits:
        return None
    n = str(max(commits))
    end, start = (root / "commits" / n).stat().st_mtime_ns / 1e6, (root / "offsets" / n).stat().st_mtime_ns / 1e6
    return end, max(end - start, 0) / 1000


def pipeline_status(settings: Settings, p: Pipeline, now_ms: float | None = None) -> PipelineStatus:
    from pipelines.engine.gold.outputs import output_checkpoint

    now_ms = time.time() * 1000 if now_ms is None else now_ms
    offsets = kafka_admin.watermark_offsets(settings.kafka, p.topic)
    committed = (committed_offsets(p.layout.checkpoint("bronze")) or {}).get(p.topic)
    earliest = settings.kafka.starting_offsets == "earliest"
    partitions = []
    for part, (low, high) in sorted(offsets.items()):
        start = committed.get(part, low) if committed is not None else (low if earliest else high)
        partitions.append(PartitionLag(part, high, start, max(high - start, 0)))
    waiting = kafka_admin.record_times(settings.kafka, p.topic, {x.partition: x.committed for x in partitions if x.lag})
    bronze_since = min(waiting.values(), default=None)
    # with bronze and silver in one query, silver waits for what bronze waits for, and its checkpoint is bronze's
    silver_checkpoint = p.layout.checkpoint("bronze" if p.bronze_with_silver else "silver")
    silver_since = bronze_since if p.bronze_with_silver else waiting_since(silver_checkpoint, p.layout.bronze.path)
    since = {p.layout.bronze.name: bronze_since, p.layout.silver.name: silver_since}
    for o in p.spec.outputs:
        source = p.source_layout(o).silver.path
        since[o.name] = silver_since if o.inline else waiting_since(output_checkpoint(p, o), source)
    checkpoints = {p.layout.bronze.name: p.layout.checkpoint("bronze"), p.layout.silver.name: silver_checkpoint}
    for o in p.spec.outputs:  # an inline output (SCD) is written by the silver query
        checkpoints[o.name] = silver_checkpoint if o.inline else output_checkpoint(p, o)
    event_time = {p.layout.bronze.name: "kafka_timestamp", p.layout.silver.name: p.spec.event_time}
    slo = p.spec.slo
    tables = []
    age = lambda ms: None if ms is None else round((now_ms - ms) / 1000, 1)  # noqa: E731
    for t in (p.layout.bronze, p.layout.silver, *p.layout.outputs):
        path = local_path(t.path)
        exists = path is not None and path.is_dir()
        last = max(commit_times(str(path)).values(), default=None) if exists else None
        behind = 0.0 if since[t.name] is None else round(max(now_ms - since[t.name], 0) / 1000, 1)
        batch = last_batch(checkpoints[t.name])
        newest = newest_value_ms(str(path), event_time[t.name]) if exists and t.name in event_time else None
        tables.append(TableState(t.name, t.layer, last, age(last), behind, slo.max_behind_s(t.layer) if slo else None,
                                 age(batch[0]) if batch else None, round(batch[1], 1) if batch else None, age(newest)))  # fmt: skip
    return PipelineStatus(p.name, p.topic, tuple(partitions), tuple(tables), slo.lag_records if slo else None,
                          run_state(p.layout.checkpoints), now_ms)  # fmt: skip


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{_duration(seconds)} ago"


def prometheus_text(states: list[PipelineStatus], kafka_reachable: bool = True) -> str:
    """The states in Prometheus' text exposition format (for a node exporter's textfile collector, or a scrape
    through any HTTP server): lag per partition, each table's last-commit age and how far behind it is, the SLOs."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    reachable = Gauge("lakepipe_kafka_reachable", "1 when the Kafka cluster answered", registry=registry)
    reachable.set(1 if kafka_reachable else 0)
    lag = Gauge("lakepipe_kafka_lag_records", "Records in Kafka not yet in bronze", ["pipeline", "topic", "partition"], registry=registry)
    labels = ["pipeline", "table", "layer"]
    age = Gauge("lakepipe_table_last_commit_age_seconds", "Seconds since the table's last Delta commit", labels, registry=registry)
    behind = Gauge("lakepipe_table_behind_seconds", "How long the oldest source data the table has not taken has waited",
                   labels, registry=registry)  # fmt: skip
    slo = Gauge("lakepipe_table_slo_seconds", "The spec's objective for lakepipe_table_behind_seconds", labels, registry=registry)
    breached = Gauge("lakepipe_slo_breached", "1 when one of the pipeline's SLOs is breached", ["pipeline"], registry=registry)
    running = Gauge("lakepipe_pipeline_running", "1 while a run of the pipeline is alive", ["pipeline"], registry=registry)
    batch_age = Gauge("lakepipe_last_batch_age_seconds", "Seconds since the last micro-batch of the query writing the table",
                      labels, registry=registry)  # fmt: skip
    batch_s = Gauge("lakepipe_last_batch_seconds", "How long that micro-batch took", labels, registry=registry)
    newest = Gauge("lakepipe_newest_event_age_seconds", "Now minus the newest event time in the table", labels, registry=registry)
    for s in states:
        running.labels(s.name).set(1 if s.run.running else 0)
        for t in s.tables:
            for gauge, value in ((batch_age, t.last_batch_age_s), (batch_s, t.last_batch_s), (newest, t.newest_event_age_s)):
                if value is not None:
                    gauge.labels(s.name, t.name, t.layer).set(value)
        for x in s.partitions:
            lag.labels(s.name, s.topic, str(x.partition)).set(x.lag)
        for t in s.tables:
            if t.age_s is not None:
                age.labels(s.name, t.name, t.layer).set(t.age_s)
            if t.behind_s is not None:
                behind.labels(s.name, t.name, t.layer).set(t.behind_s)
            if t.slo_s is not None:
                slo.labels(s.name, t.name, t.layer).set(t.slo_s)
        breached.labels(s.name).set(1 if s.breaches else 0)
    return generate_latest(registry).decode()
