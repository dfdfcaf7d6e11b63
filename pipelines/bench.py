"""`make bench`: each stage against the strongest simple baseline, side by side on the same broker.

Figures are ratios (ours / baseline) so they hold on any machine. Each figure is the median of 3 repeats
after a warm-up, alternating which side runs first. Measured so far:
- P1b producer: the clickstream simulator (generate, serialise, send) / a bare confluent-kafka loop
  sending the same pre-serialised payloads with the same producer settings.
- P2 bronze: draining a backlog with our bronze query (Trigger.AvailableNow) / the minimal documented job
  (readStream kafka -> CAST(value AS STRING) -> writeStream delta, AvailableNow), same backlog.
- P3 silver quality: our silver query over one bronze table with the clickstream expectation suite (row rules
  in the parsing pass, batch rules through Great Expectations) / the same query with no suite.
- P4 gold: the clickstream gold queries (windowed aggregates and sessions, update mode + MERGE) over one
  silver table / a plain streaming append of the same silver rows to Delta.
Peak RSS of the Spark driver JVM is sampled during each run. Results: a table on stdout, and JSON and
Markdown in `bench-results/` (git-ignored), with the machine's cores, memory and versions.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from confluent_kafka import Producer

from pipelines import kafka_admin
from pipelines.bronze import start_bronze
from pipelines.config import KafkaSettings, Settings, load_settings
from pipelines.jars import PROJECT_DIR
from pipelines.session import get_spark, stop_spark
from pipelines.simulators.base import SimEvent
from pipelines.simulators.clickstream import ClickstreamGenerator

PRODUCER_CONF = {"linger.ms": 20, "batch.size": 1_000_000, "acks": "all", "enable.idempotence": True,
                 "compression.type": "lz4", "queue.buffering.max.messages": 500_000}  # fmt: skip
REPEATS = 3


@dataclass
class Figure:
    name: str
    what: str
    ours: float  # records per second, median
    baseline: float
    unit: str = "records/s"
    ours_runs: tuple[float, ...] = ()
    baseline_runs: tuple[float, ...] = ()
    peak_rss_mb: float | None = None
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def payloads(n: int, seed: int = 1) -> list[bytes]:
    """n distinct clickstream events (~500 bytes each): a generated pool with unique event ids."""
    gen = ClickstreamGenerator(seed=seed, start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    pool = [gen.next_event().payload() for _ in range(min(n, 20_000))]
    out = []
    for i in range(n):
        p = dict(pool[i % len(pool)], event_id=f"bench-{i:012d}")
        p.setdefault("page_url", "/")
        p["referrer"] = p.get("referrer") or "https://search.example.com/q=" + "x" * 120
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


def simulate(kafka: KafkaSettings, topic: str, n: int) -> float:
    """Our simulator end to end (generate, serialise, send with delivery callbacks); records/s."""
    from pipelines.simulators.base import KafkaSink, Tally, publish

    start = time.perf_counter()
    tally = publish(ClickstreamGenerator(seed=2).events(), KafkaSink(kafka, topic, Tally(), **PRODUCER_CONF), count=n)
    elapsed = time.perf_counter() - start
    assert sum(tally.delivered.values()) == n, tally.to_dict()
    return n / elapsed


CREATED: list[str] = []


def new_topic(kafka: KafkaSettings, prefix: str) -> str:
    topic = f"bench.{prefix}.{uuid.uuid4().hex[:8]}"
    kafka_admin.ensure_topic(kafka, topic, partitions=2)
    CREATED.append(topic)
    return topic


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


def drain_ours(spark, kafka: KafkaSettings, topic: str, root: Path) -> None:
    name = f"bench.bronze.{root.name}"
    q = start_bronze(spark, kafka, topic, str(root / "bronze"), str(root / "ckpt"), {"availableNow": True}, name)
    q.awaitTermination()


def drain_minimal(spark, kafka: KafkaSettings, topic: str, root: Path) -> None:
    q = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .selectExpr("CAST(value AS STRING) AS value")
        .writeStream.format("delta")
        .option("checkpointLocation", str(root / "ckpt"))
        .trigger(availableNow=True)
        .start(str(root / "delta"))
    )
    q.awaitTermination()


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


def bench_producer(kafka: KafkaSettings, n: int) -> Figure:
    gen = ClickstreamGenerator(seed=2)
    values = [gen.next_event() for _ in range(n)]  # the same records the simulator sends, pre-made
    simulate(kafka, new_topic(kafka, "warm"), 5000)
    produce(kafka, new_topic(kafka, "warm"), values[:5000])
    ours, base = timed_pairs(lambda: simulate(kafka, new_topic(kafka, "p1b"), n),
                             lambda: produce(kafka, new_topic(kafka, "p1b"), values))  # fmt: skip
    return Figure("P1b", f"simulator / bare confluent-kafka loop sending the same pre-made records, {n:,}",
                  statistics.median(ours),
                  statistics.median(base), ours_runs=tuple(ours), baseline_runs=tuple(base), target=0.7)  # fmt: skip


def bench_bronze(spark, kafka: KafkaSettings, n: int, scratch: Path) -> Figure:
    topic = new_topic(kafka, "p2")
    produce(kafka, topic, payloads(n))
    warm = new_topic(kafka, "warm")
    produce(kafka, warm, payloads(20_000))
    jvm_pid = spark._jvm.java.lang.ProcessHandle.current().pid()  # noqa: SLF001 - the driver JVM
    peak = 0

    def run(drain: Callable) -> float:
        nonlocal peak
        root = Path(tempfile.mkdtemp(dir=scratch))
        try:
            with RssSampler(jvm_pid) as rss:
                start = time.perf_counter()
                drain(spark, kafka, topic, root)
                elapsed = time.perf_counter() - start
            peak = max(peak, rss.peak_kb)
            rows = spark.read.format("delta").load(str(root / ("bronze" if drain is drain_ours else "delta"))).count()
            assert rows == n, f"{drain.__name__} wrote {rows} rows, expected {n}"
            return n / elapsed
        finally:
            shutil.rmtree(root, ignore_errors=True)

    for drain in (drain_ours, drain_minimal):  # warm-up: JIT, codegen, Delta log code paths
        root = Path(tempfile.mkdtemp(dir=scratch))
        drain(spark, kafka, warm, root)
        shutil.rmtree(root, ignore_errors=True)
    ours, base = timed_pairs(lambda: run(drain_ours), lambda: run(drain_minimal))
    return Figure("P2", f"bronze drain / minimal Kafka->Delta job, {n:,} records backlog, 2 partitions",
                  statistics.median(ours), statistics.median(base), ours_runs=tuple(ours), baseline_runs=tuple(base),
                  peak_rss_mb=peak / 1024, target=0.9)  # fmt: skip


def _clickstream():  # noqa: ANN202
    from pipelines.spec import resolve_spec

    return resolve_spec(PROJECT_DIR / "conf" / "pipelines" / "clickstream.yaml", PROJECT_DIR / "schemas")


def _layout(root: Path):  # noqa: ANN202
    from pipelines.layout import PipelineLayout, Table

    t = lambda name, layer: Table(name, layer, "bench", str(root / name))  # noqa: E731
    gold = tuple(t(g.name, "gold") for g in _clickstream().spec.gold)
    return PipelineLayout("bench", t("bronze", "bronze"), t("silver", "silver"), t("quarantine", "quarantine"),
                          t("batches", "audit"), gold, str(root / "ckpt"), t("quality", "audit"))  # fmt: skip


def silver_drain(spark, bronze_path: str, root: Path, suite) -> float:  # noqa: ANN001
    """Our silver query over a bronze table into `root`, once (AvailableNow); seconds taken."""
    from pipelines.silver import SilverBatchWriter, ensure_silver_tables

    resolved, layout = _clickstream(), _layout(root)
    ensure_silver_tables(spark, resolved.contract, resolved.spec, layout)
    checkpoint = layout.checkpoint("silver")
    writer = SilverBatchWriter(resolved.contract, resolved.spec, layout, checkpoint, suite, "bench.silver")
    start = time.perf_counter()
    q = (spark.readStream.format("delta").load(bronze_path).writeStream.foreachBatch(writer)
         .option("checkpointLocation", checkpoint).trigger(availableNow=True).start())  # fmt: skip
    q.awaitTermination()
    return time.perf_counter() - start


def make_bronze(spark, kafka: KafkaSettings, n: int, scratch: Path, name: str) -> str:
    topic = new_topic(kafka, name)
    produce(kafka, topic, payloads(n))
    drain_ours(spark, kafka, topic, scratch / f"{name}-bronze")
    return str(scratch / f"{name}-bronze" / "bronze")


def bench_quality(spark, kafka: KafkaSettings, n: int, scratch: Path) -> Figure:
    """P3: the same bronze rows through silver with the full suite and with none."""
    suite = _clickstream().suite
    bronze = make_bronze(spark, kafka, n, scratch, "p3")

    def run(with_suite) -> float:  # noqa: ANN001
        root = Path(tempfile.mkdtemp(dir=scratch))
        try:
            elapsed = silver_drain(spark, bronze, root, with_suite)
            rows = spark.read.format("delta").load(str(root / "silver")).count()
            assert rows == n, f"silver has {rows} rows, expected {n}"
            return n / elapsed
        finally:
            shutil.rmtree(root, ignore_errors=True)

    run(suite), run(None)  # warm-up
    ours, base = timed_pairs(lambda: run(suite), lambda: run(None))
    rules = f"{len(suite.row_rules)} row + {len(suite.batch_rules)} batch rules"
    return Figure("P3", f"silver with the clickstream suite ({rules}) / silver without checks, {n:,} records",
                  statistics.median(ours), statistics.median(base), ours_runs=tuple(ours), baseline_runs=tuple(base),
                  target=0.8)  # fmt: skip


def bench_gold(spark, kafka: KafkaSettings, n: int, scratch: Path) -> Figure:
    """P4: the clickstream gold stage (three stateful queries, MERGE) / a plain append of the same silver rows."""
    from pyspark.sql.types import StructType

    from pipelines import runner
    from pipelines.delta_io import ensure_table

    resolved = _clickstream()
    base_root = scratch / "p4-silver"
    silver_drain(spark, make_bronze(spark, kafka, n, scratch, "p4"), base_root, None)
    silver = str(base_root / "silver")
    rows = spark.read.format("delta").load(silver).count()
    trigger = {"availableNow": True}

    def gold(root: Path) -> None:
        layout = _layout(root)
        layout = dataclasses.replace(layout, silver=dataclasses.replace(layout.silver, path=silver))
        p = runner.Pipeline(resolved.spec, resolved.contract, resolved.functions, "-", "10 minutes", layout, {})
        for g in resolved.spec.gold:
            fields = [f for f in p.gold_rows(g, spark.readStream.format("delta").load(silver)).schema.fields if f.name != g.delete_flag]
            ensure_table(spark, layout.gold_table(g.name).path, StructType(fields))
        for q in [runner._gold(spark, p, g, trigger) for g in resolved.spec.gold]:  # noqa: SLF001
            q.awaitTermination()

    def append(root: Path) -> None:
        q = (spark.readStream.format("delta").load(silver).writeStream.format("delta")
             .option("checkpointLocation", str(root / "ckpt")).trigger(availableNow=True).start(str(root / "copy")))  # fmt: skip
        q.awaitTermination()

    def run(fn: Callable[[Path], None]) -> float:
        root = Path(tempfile.mkdtemp(dir=scratch))
        try:
            start = time.perf_counter()
            fn(root)
            return rows / (time.perf_counter() - start)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    run(gold), run(append)  # warm-up
    ours, base = timed_pairs(lambda: run(gold), lambda: run(append))
    return Figure("P4", f"gold (revenue, activity, sessions; update + MERGE) / plain append of the same {rows:,} silver rows",
                  statistics.median(ours), statistics.median(base), ours_runs=tuple(ours), baseline_runs=tuple(base),
                  target=0.5)  # fmt: skip


def machine(spark) -> dict:
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    mem_kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
    import confluent_kafka
    import delta
    import pyspark

    return {
        "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024**2, 1), "java": java,
        "python": platform.python_version(), "pyspark": pyspark.__version__,
        "delta_jvm": sorted(p.name for p in (PROJECT_DIR / ".jars" / "spark").glob("delta-spark_*.jar")),
        "delta_python": getattr(delta, "__version__", "4.4.1"), "confluent_kafka": confluent_kafka.version()[0],
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def report(figures: list[Figure], info: dict, command: str, out_dir: Path) -> str:
    lines = [
        f"Benchmarks (`{command}`), {info['cores']} cores, {info['memory_gb']} GB, {info['java']}, "
        f"PySpark {info['pyspark']}; medians of {REPEATS} after a warm-up.",
        "",
        "| figure | what | ours | baseline | ratio | target | driver peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for f in figures:
        rss = f"{f.peak_rss_mb:,.0f} MB" if f.peak_rss_mb else "-"
        target = f">= {f.target}" if f.target is not None else "-"
        lines.append(f"| {f.name} | {f.what} | {f.ours:,.0f} {f.unit} | {f.baseline:,.0f} {f.unit} | "
                     f"{f.ratio:.2f} | {target} | {rss} |")  # fmt: skip
    text = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = info["when"].replace(":", "")
    (out_dir / f"bench-{stamp}.md").write_text(text + "\n")
    data = {"machine": info, "command": command, "figures": [asdict(f) | {"ratio": f.ratio} for f in figures]}
    (out_dir / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2))
    return text


def run_bench(settings: Settings, quick: bool) -> str:
    n_produce, n_bronze, n_silver = (50_000, 200_000, 50_000) if quick else (300_000, 2_000_000, 200_000)
    scratch = Path(settings.lake_root) / "_bench"
    scratch.mkdir(parents=True, exist_ok=True)
    figures = [bench_producer(settings.kafka, n_produce)]
    spark = get_spark(settings.spark, "lakepipe-bench")
    try:
        figures.append(bench_bronze(spark, settings.kafka, n_bronze, scratch))
        figures.append(bench_quality(spark, settings.kafka, n_silver, scratch))
        figures.append(bench_gold(spark, settings.kafka, n_silver, scratch))
        info = machine(spark)
    finally:
        stop_spark(spark)
        shutil.rmtree(scratch, ignore_errors=True)
        for topic in CREATED:
            kafka_admin.delete_topic(settings.kafka, topic)
    return report(figures, info, "make bench QUICK=1" if quick else "make bench", PROJECT_DIR / "bench-results")


def main() -> None:
    parser = argparse.ArgumentParser(description="lakepipe benchmarks (not tests: they never fail the suite)")
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--env", help="environment (default: local)")
    args = parser.parse_args()
    settings = load_settings(args.env)
    kafka_admin.list_topics(settings.kafka)
    print(run_bench(settings, args.quick))


if __name__ == "__main__":
    main()
