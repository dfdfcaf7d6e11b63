"""What every benchmark shares: the fixed-seed record set, the producer loop, topics, timing and memory."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Producer

from pipelines.domains.clickstream.simulator import ClickstreamGenerator
from pipelines.model.config import KafkaSettings
from pipelines.platform import kafka_admin
from pipelines.simulators.base import SimEvent

# The producer settings of every side of every figure (Kafka's perf tool gets the same, see producer.py).
PRODUCER_CONF = {"linger.ms": 20, "batch.size": 1_000_000, "acks": "all", "enable.idempotence": True,
                 "compression.type": "lz4", "queue.buffering.max.messages": 500_000}  # fmt: skip
REPEATS = 3
WARM_UP = True  # False in quick runs: one run per side, no warm-up (a smoke run)
PARTITIONS = 2


@dataclass
class Figure:
    """One line of the results table: ours / baseline, medians of REPEATS runs."""

    name: str
    what: str
    ours: float
    baseline: float
    unit: str = "records/s"
    ours_runs: tuple[float, ...] = ()
    baseline_runs: tuple[float, ...] = ()
    peak_rss_mb: float | None = None
    target: float | None = None
    lower_is_better: bool = False  # latencies and costs; the ratio is still ours / baseline
    seconds: float = 0.0  # wall time of the whole figure, set by the runner
    details: dict = field(default_factory=dict)  # extra figures (latency percentiles, sizes, files)

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    @classmethod
    def of_runs(cls, name: str, what: str, ours: list[float], base: list[float], **kw: object) -> Figure:
        return cls(name, what, statistics.median(ours), statistics.median(base), ours_runs=tuple(ours),
                   baseline_runs=tuple(base), **kw)  # type: ignore[arg-type]  # fmt: skip


def payloads(n: int, seed: int = 1, event_times: tuple[dt.datetime, float] | None = None) -> list[bytes]:
    """n distinct clickstream events of about 500 bytes (the contract's fields, realistic URLs).

    A pool of generated events, each copy with its own event id, so dedup keeps every record. With
    `event_times=(start, per_second)`, record i happens at start + i / per_second (a stream moving forward,
    so no record is late for gold's watermark however long the run).
    """
    gen = ClickstreamGenerator(seed=seed, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    pool = [gen.next_event().payload() for _ in range(min(n, 20_000))]
    out = []
    for i in range(n):
        p = dict(pool[i % len(pool)], event_id=f"bench-{i:012d}")
        if event_times:
            at = event_times[0] + dt.timedelta(seconds=i / event_times[1])
            p["event_time"] = at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        campaign = f"utm_source=newsletter&utm_medium=email&utm_campaign=winter-sale-{i % 97:02d}&utm_content=hero"
        p["page_url"] = f"https://shop.example.com{p.get('page_url') or '/'}?{campaign}"
        p["referrer"] = f"https://www.search.example.com/search?q=winter+coat+{i % 1013}&source=hp&ei=" + "x" * 60
        out.append(json.dumps(p, separators=(",", ":")).encode())
    return out


def produce(kafka: KafkaSettings, topic: str, values: list[bytes] | list[SimEvent]) -> float:
    """Send pre-serialised records as fast as possible; returns records/s (the bare-loop baseline).

    `values` are either plain values or simulator events, sent with the same key and headers.
    """
    producer = Producer(kafka_admin.client_config(kafka, **PRODUCER_CONF))
    start = time.perf_counter()
    for v in values:
        key, value, headers = (v.key, v.value, list(v.headers)) if isinstance(v, SimEvent) else (None, v, None)
        while True:
            try:
                producer.produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    return len(values) / (time.perf_counter() - start)


class Topics:
    """Fresh topics for one bench run (same layout: 2 partitions), deleted at the end."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka, self.created = kafka, []
        self._backlogs: dict[int, str] = {}

    def new(self, prefix: str) -> str:
        topic = f"bench.{prefix}.{uuid.uuid4().hex[:8]}"
        kafka_admin.ensure_topic(self.kafka, topic, partitions=PARTITIONS)
        self.created.append(topic)
        return topic

    def with_records(self, prefix: str, n: int) -> str:
        """A topic holding payloads(n): made once per size, then shared (reading does not change it)."""
        if n not in self._backlogs:
            self._backlogs[n] = self.new(prefix)
            produce(self.kafka, self._backlogs[n], payloads(n))
        return self._backlogs[n]

    def delete_all(self) -> None:
        for topic in self.created:
            kafka_admin.delete_topic(self.kafka, topic)


class RssSampler:
    """Peak resident memory of a process, sampled every 100 ms while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except FileNotFoundError:
                return
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class DriverMemory:
    """Peak RSS of the Spark driver JVM over every run measured with it, in MB."""

    def __init__(self, spark) -> None:  # noqa: ANN001
        self.pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # noqa: SLF001 - the driver JVM
        self.peak_kb = 0

    @contextmanager
    def sampled(self) -> Iterator[None]:
        with RssSampler(self.pid) as rss:
            yield
        self.peak_kb = max(self.peak_kb, rss.peak_kb)

    @property
    def peak_mb(self) -> float:
        return self.peak_kb / 1024


@contextmanager
def scratch_dir(parent: Path) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(dir=parent))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def timed_pairs(ours: Callable[[], float], baseline: Callable[[], float]) -> tuple[list[float], list[float]]:
    """REPEATS runs of each, alternating which goes first."""
    a, b = [], []
    for i in range(REPEATS):
        if i % 2 == 0:
            a.append(ours())
            b.append(baseline())
        else:
            b.append(baseline())
            a.append(ours())
    return a, b
