"""L1: how long a record takes from the producer's send to being readable in bronze, silver and gold.

Records are sent at a fixed rate to a fresh topic while queries run continuously, each with the minimal job's
default trigger (the next micro-batch as soon as the previous one ends); then the same load for the minimal
job (kafka -> cast value -> delta) alone:
- L1: our bronze query alone, at half the highest bronze rate (P2's drain rate);
- L1e: the whole clickstream pipeline (bronze, silver with its suite, three gold queries), at half the highest
  silver rate (P3's): at L1's rate silver could not keep up, and latency would only measure a growing backlog.

- Send time: the Kafka record's CreateTime, set by the producer in `produce()` (kept in bronze and silver).
- Readable in bronze and silver: the time the Delta commit that added the row's file was written (the
  `_delta_log` entry's modification time; readers see a version once its log file exists).
- Readable in gold: gold rows are aggregates, so a record counts as readable once every gold query has
  finished a micro-batch whose source offset covers the silver version holding the record.
Only records sent after a warm-up are measured.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
from confluent_kafka import Producer
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipelines.bench import stages
from pipelines.bench.common import PRODUCER_CONF, DriverMemory, Figure, Topics, payloads
from pipelines.engine import runner
from pipelines.engine.delta_log import commit_times, data_files, file_versions, latest_version
from pipelines.errors import LakepipeError
from pipelines.model.config import KafkaSettings, LakeSettings, PipelineSettings, Settings
from pipelines.model.project import load_project
from pipelines.platform import kafka_admin

WARMUP_SECONDS = 10
CATCH_UP_SECONDS = 300
QUANTILES = (0.5, 0.95, 0.99)


def pipeline_settings(settings: Settings, root: Path, topic: str, trigger: str) -> Settings:
    """`settings` with its lake under `root`, clickstream reading `topic`, every query on `trigger`."""
    file = dataclasses.replace(
        settings.file, lake=LakeSettings(root=str(root)), pipelines={"clickstream": PipelineSettings(topic=topic)},
        streaming=dataclasses.replace(settings.file.streaming, trigger_interval=trigger),
    )  # fmt: skip
    return dataclasses.replace(settings, file=file)


class PacedSender(threading.Thread):
    """Sends `values` at `rate` records/s from a thread (Kafka stamps each with its CreateTime)."""

    def __init__(self, kafka: KafkaSettings, topic: str, values: list[bytes], rate: float) -> None:
        super().__init__(daemon=True)
        self.kafka, self.topic, self.values, self.rate = kafka, topic, values, rate
        self.started = self.ended = 0.0
        self.sent = 0  # records handed to the producer so far
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer(kafka_admin.client_config(self.kafka, **PRODUCER_CONF))
            self.started = t0 = time.time()
            for i, value in enumerate(self.values):
                ahead = t0 + i / self.rate - time.time()
                if ahead > 0.002:
                    time.sleep(ahead)
                while True:
                    try:
                        producer.produce(self.topic, value)
                        break
                    except BufferError:
                        producer.poll(0.01)
                producer.poll(0)
                self.sent = i + 1
            self.ended = time.time()
            if producer.flush(120):
                raise LakepipeError("records still unsent after 120 s")
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            self.error = e


def progress_ms(progress_timestamp: str) -> float:
    return dt.datetime.fromisoformat(progress_timestamp.replace("Z", "+00:00")).timestamp() * 1000


def batch_ends(q: StreamingQuery) -> list[tuple[float, int, int]]:
    """(end time ms, end reservoirVersion, end index) of each micro-batch of a query reading a Delta table."""
    out = []
    for p in q.recentProgress:
        if not p.sources or not p.sources[0].endOffset:
            continue
        end = json.loads(p.sources[0].endOffset)
        out.append((progress_ms(p.timestamp) + p.durationMs.get("triggerExecution", 0), end["reservoirVersion"], end["index"]))
    return out


def ready_times(ends: list[tuple[float, int, int]], versions: list[int]) -> dict[int, float]:
    """For each table version: the end of the first micro-batch whose source offset covers it."""
    out = {}
    for v in versions:
        done = [t for t, rv, idx in ends if rv > v or (rv == v and idx >= 0)]
        if done:
            out[v] = min(done)
    return out


def latencies(spark, table: str, sent_col: str, since_ms: float, ready: dict[int, float] | None = None):  # noqa: ANN001, ANN201
    """Milliseconds from send to readable for the rows of the Delta table at `table` sent after `since_ms`.

    Readable: the commit of the file that first held the row, or `ready[version]` when given (a later stage's
    readiness). The files are read as the log added them, so rows that auto compaction has since rewritten into
    other files count from their first commit, not from the compaction's.
    """
    commits = commit_times(table)
    files = data_files(table)
    versions = {path.rsplit("/", 1)[-1]: v for path, v in files.items()}
    rows = (
        spark.read.parquet(*[f"{table}/{unquote(path)}" for path in files])
        .select(F.unix_millis(sent_col).alias("sent"), F.col("_metadata.file_name").alias("file"))
        .where(F.col("sent") >= since_ms)
        .groupBy("file", "sent").count()  # fmt: skip
        .toPandas()
    )
    rows["version"] = rows["file"].map(versions)
    if rows["version"].isna().any():
        raise LakepipeError(f"{table}: files not found in the Delta log")
    done = rows["version"].map(ready if ready is not None else commits)
    ms = (done - rows["sent"]).repeat(rows["count"])
    return ms.dropna(), int(ms.isna().sum())


def batch_profile(q: StreamingQuery, since_ms: float) -> dict:
    """Where a query's time went: its micro-batches with input since `since_ms`, median milliseconds per phase."""
    batches = [p for p in q.recentProgress if p.numInputRows > 0 and progress_ms(p.timestamp) >= since_ms]
    phases = sorted({k for p in batches for k in p.durationMs})
    median = lambda k: float(pd.Series([p.durationMs.get(k, 0) for p in batches]).median())  # noqa: E731
    return {"batches": len(batches), "rows_per_batch": round(sum(p.numInputRows for p in batches) / max(len(batches), 1)),
            **{k: median(k) for k in phases}}  # fmt: skip


def summary(ms: pd.Series, missing: int) -> dict:
    out = {f"p{int(q * 100)}": round(float(ms.quantile(q)), 0) for q in QUANTILES}
    return out | {"records": int(len(ms)), "not_ready": missing}


def send(kafka: KafkaSettings, topic: str, values: list[bytes], rate: float) -> PacedSender:
    sender = PacedSender(kafka, topic, values, rate)
    sender.start()
    sender.join()
    if sender.error:
        raise LakepipeError(f"paced producer failed: {sender.error}")
    return sender


def run_load(kafka: KafkaSettings, topic: str, values: list[bytes], rate: float, caught_up) -> tuple[float, float, bool]:  # noqa: ANN001
    """Send a warm-up and wait until `caught_up(n)`: then the queries are past their first, slow batches.
    Then send the rest at `rate` and wait again.

    Returns when the measured sending began (epoch ms), the rate achieved and whether the queries caught up.
    """
    warm = int(rate * WARMUP_SECONDS)  # none in quick runs: first-batch costs are then in the figures
    if warm:
        send(kafka, topic, values[:warm], rate)
        if not wait_for(lambda: caught_up(warm), CATCH_UP_SECONDS):
            raise LakepipeError(f"the queries did not take the {warm:,} warm-up records in {CATCH_UP_SECONDS} s")
    sender = send(kafka, topic, values[warm:], rate)
    done = wait_for(lambda: caught_up(len(values)), CATCH_UP_SECONDS)
    return sender.started * 1000, len(sender.values) / (sender.ended - sender.started), done


def wait_for(done, timeout: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.5)
    return False


def kafka_consumed(q: StreamingQuery, total: int) -> bool:
    p = q.lastProgress
    return bool(p and p.sources) and sum(sum(o.values()) for o in json.loads(p.sources[0].endOffset).values()) >= total


def delta_consumed(q: StreamingQuery, table: str) -> bool:
    latest = latest_version(table)
    return bool(ready_times(batch_ends(q), [latest]))


def measured(spark, kafka: KafkaSettings, topic: str, rate: float, seconds: float,  # noqa: ANN001
             queries: list[StreamingQuery], caught_up: Callable[[int], bool]) -> dict:  # fmt: skip
    """Load the running `queries` at `rate` (warm-up first), stop them; the run's facts, with `since` (ms)."""
    values = payloads(int(rate * (WARMUP_SECONDS + seconds)))
    memory = DriverMemory(spark)
    try:
        with memory.sampled():
            since, achieved, done = run_load(kafka, topic, values, rate, caught_up)
        for q in queries:
            runner.raise_if_failed(q, queries)
    finally:
        for q in queries:
            q.stop()
    return {"since": since, "rate": round(achieved), "caught_up": done, "peak_rss_mb": round(memory.peak_mb),
            "profile": {q.name: batch_profile(q, since) for q in queries}}  # fmt: skip


def continuous(df, root: Path, name: str) -> StreamingQuery:  # noqa: ANN001
    """`df` written to a Delta table at root/delta, micro-batches back to back (the default trigger).

    The minimal job's table is root/delta too, and so is ours in bench_latency (see stages.start_bronze_table).
    """
    return (df.writeStream.format("delta").queryName(name).option("checkpointLocation", str(root / "ckpt"))
            .start(str(root / "delta")))  # fmt: skip


def measure_bronze(spark, kafka: KafkaSettings, topics: Topics, rate: float, seconds: float, root: Path,  # noqa: ANN001
                   minimal: bool) -> dict:  # fmt: skip
    """Our bronze query alone, or the minimal job (kafka -> CAST(value AS STRING), plus the send time)."""
    topic = topics.new("l1")
    if minimal:
        rows = stages.minimal_source(spark, kafka, topic)
        q = continuous(rows.selectExpr("CAST(value AS STRING) AS value", "timestamp AS kafka_timestamp"), root, "minimal")
    else:
        q = stages.start_bronze_table(spark, kafka, topic, root, {"processingTime": "0 seconds"})
    out = measured(spark, kafka, topic, rate, seconds, [q], lambda n: kafka_consumed(q, n))
    return out | {"bronze": summary(*latencies(spark, str(root / "delta"), "kafka_timestamp", out["since"]))}


def measure_pipeline(spark, settings: Settings, topics: Topics, rate: float, seconds: float, root: Path) -> dict:  # noqa: ANN001
    """The whole clickstream pipeline (bronze, silver with its suite, three gold queries) running together."""
    topic = topics.new("l1e")
    env = pipeline_settings(settings, root, topic, "0 seconds")
    project = load_project(env, ["clickstream"])
    queries = runner.start_all(spark, project, ["clickstream"], {"processingTime": "0 seconds"})
    by_name = {q.name: q for q in queries}
    layout = project.pipeline("clickstream").layout
    bronze, silver = layout.bronze.path, layout.silver.path
    gold = [q for q in queries if ".gold." in q.name]
    bronze_query = by_name.get("clickstream.bronze")  # none when one query writes bronze and silver
    out = measured(spark, settings.kafka, topic, rate, seconds, queries, lambda n: (
        kafka_consumed(bronze_query or by_name["clickstream.silver"], n)
        and (bronze_query is None or delta_consumed(by_name["clickstream.silver"], bronze))
        and all(delta_consumed(q, silver) for q in gold)))  # fmt: skip
    versions = sorted(set(file_versions(silver).values()))
    gold_ready = [ready_times(batch_ends(q), versions) for q in gold]
    ready = {v: max(r[v] for r in gold_ready) for v in versions if all(v in r for r in gold_ready)}
    since = out["since"]
    return out | {
        "bronze": summary(*latencies(spark, bronze, "kafka_timestamp", since)),
        "silver": summary(*latencies(spark, silver, "kafka_timestamp", since)),
        "gold": summary(*latencies(spark, silver, "kafka_timestamp", since, ready)),
    }


def bench_latency(spark, settings: Settings, topics: Topics, rates: dict[str, float], seconds: float,  # noqa: ANN001
                  scratch: Path) -> list[Figure]:  # fmt: skip
    """L1: bronze alone at rates["L1"] (half the highest bronze rate); L1e: the whole pipeline at rates["L1e"]
    (half the highest silver rate), each beside the minimal job at the same rate. Only those in `rates`."""
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "100000")  # keep every batch's progress
    kafka, figures = settings.kafka, []
    for name, rate in rates.items():
        start = time.perf_counter()
        if name == "L1":
            ours = measure_bronze(spark, kafka, topics, rate, seconds, scratch / "l1-bronze", minimal=False)
            layer, what = "bronze", "p99 ms send -> readable in bronze (bronze query alone)"
        else:
            ours = measure_pipeline(spark, settings, topics, rate, seconds, scratch / "l1-pipeline")
            layer, what = "gold", "p99 ms send -> readable in gold (whole pipeline running)"
        minimal = measure_bronze(spark, kafka, topics, rate, seconds, scratch / f"l1-minimal-{name}", minimal=True)
        figures.append(Figure(
            name, f"{what} / the minimal job's p99, at {ours['rate']:,} records/s for {seconds:.0f} s (lower is better)",
            ours[layer]["p99"], minimal["bronze"]["p99"], unit="ms", lower_is_better=True,
            peak_rss_mb=max(ours["peak_rss_mb"], minimal["peak_rss_mb"]), target=None,
            details={"ours": ours, "minimal": minimal, "root": str(scratch / "l1-pipeline")},
            seconds=time.perf_counter() - start,
        ))  # fmt: skip
    return figures
