"""`lakepipe status`: how far each pipeline's bronze is behind Kafka, and when each of its tables last committed.

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

from pipelines.engine.delta_log import commit_times
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import Pipeline
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


@dataclass(frozen=True)
class PipelineStatus:
    name: str
    topic: str
    partitions: tuple[PartitionLag, ...]
    tables: tuple[TableState, ...]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_dict(self) -> dict:
        return {"pipeline": self.name, "topic": self.topic, "lag_records": self.lag, **asdict(self)}

    def line(self) -> str:
        parts = ", ".join(f"p{p.partition} {p.lag:,}" for p in self.partitions)
        ages = ", ".join(f"{t.name} {_age(t.age_s)}" for t in self.tables)
        return f"{self.name}: {self.topic} lag {self.lag:,} records ({parts}); last commit: {ages}"


def local_path(path: str) -> Path | None:
    """The local file system path of a lake path, or None when it lives elsewhere (s3a://, abfss://, dbfs:/...)."""
    if path.startswith("file:"):
        return Path(path.removeprefix("file:"))
    return None if "://" in path or path.startswith("dbfs:") else Path(path)


def committed_offsets(checkpoint: str) -> dict[str, dict[int, int]] | None:
    """{topic: {partition: offset}} where the next micro-batch of the query with this checkpoint starts: the end
    offsets of its last committed batch (None before its first)."""
    root = local_path(checkpoint)
    if root is None:
        raise LakepipeError(f"lakepipe status reads local lakes only; {checkpoint} is not on this machine")
    commits = [int(f.name) for f in (root / "commits").glob("*") if f.name.isdigit()] if (root / "commits").is_dir() else []
    if not commits:
        return None
    lines = (root / "offsets" / str(max(commits))).read_text().splitlines()
    return {t: {int(p): int(o) for p, o in parts.items()} for t, parts in json.loads(lines[2]).items()}


def pipeline_status(settings: Settings, p: Pipeline, now_ms: float | None = None) -> PipelineStatus:
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    offsets = kafka_admin.watermark_offsets(settings.kafka, p.topic)
    committed = (committed_offsets(p.layout.checkpoint("bronze")) or {}).get(p.topic)
    earliest = settings.kafka.starting_offsets == "earliest"
    partitions = []
    for part, (low, high) in sorted(offsets.items()):
        start = committed.get(part, low) if committed is not None else (low if earliest else high)
        partitions.append(PartitionLag(part, high, start, max(high - start, 0)))
    tables = []
    for t in (p.layout.bronze, p.layout.silver, *p.layout.outputs):
        path = local_path(t.path)
        last = max(commit_times(str(path)).values(), default=None) if path is not None and path.is_dir() else None
        tables.append(TableState(t.name, t.layer, last, None if last is None else round((now_ms - last) / 1000, 1)))
    return PipelineStatus(p.name, p.topic, tuple(partitions), tuple(tables))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.1f} h ago"
