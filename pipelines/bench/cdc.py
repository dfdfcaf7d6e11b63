"""C1 and C2: the customers pipeline on the real change-data-capture source (PostgreSQL -> Debezium -> Kafka).

Both run against a PostgreSQL and a Kafka Connect worker of their own (ports, topics and state under the bench's
scratch folder), with 1,000 more customers than the shop's 20, so the user's `lakepipe cdc` data is not touched.
- C1: single-row updates committed at a steady rate through one psql session while the customers pipeline runs
  continuously (micro-batches back to back). Per change, from its commit (`source.ts_ms`, PostgreSQL's commit
  time, on the same clock): to the Kafka record (the connector alone, in the details), to silver (the Delta commit
  of the row's file), and to current in the SCD1 table (the end of the first SCD1 micro-batch whose source
  offset covers the silver version holding the change). Only changes after a warm-up are measured.
  Beside it, at the same rate and on the same topic: the minimal CDC job, the shortest Spark job a team would write
  for a current-state table (Kafka -> `from_json` of the Debezium envelope -> per micro-batch the newest change per
  key MERGEd into a Delta table, deletes deleting), micro-batches back to back. A change is current there at the end
  of the first micro-batch whose Kafka end offset is past the change's. No suite, dedup, quarantine, bronze, audit
  or history: what Spark and Delta alone cost on this machine for the same path.
- C2: a burst of changes (100-row UPDATEs, one transaction each), streamed by the connector, then one `--once`
  run of the customers pipeline over the connector's topic: changes per second into SCD1/SCD2; beside it the
  same run over as many simulated envelopes (the customers simulator).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pandas as pd
from delta.tables import DeltaTable
from pyspark.sql import Window
from pyspark.sql import functions as F

from pipelines.bench import common
from pipelines.bench.common import Figure, Topics
from pipelines.bench.latency import (
    batch_profile,
    delta_consumed,
    kafka_consumed,
    latencies,
    progress_ms,
    summary,
    wait_for,
)
from pipelines.bench.stages import minimal_source
from pipelines.domains.customers.simulator import CdcGenerator
from pipelines.engine import runner
from pipelines.engine.delta_log import followed_by, latest_version
from pipelines.errors import LakepipeError
from pipelines.model.config import LakeSettings, PipelineSettings, Settings
from pipelines.model.project import load_project
from pipelines.platform import kafka_admin, local_cdc
from pipelines.platform.processes import free_port
from pipelines.simulators.base import KafkaSink, Tally, publish

CUSTOMERS = 1_000  # besides the shop's 20
WARMUP_SECONDS = 10
TIERS = "ARRAY['bronze', 'silver', 'gold', 'platinum']"
MARKER = "UPDATE customers SET updated_at = now() WHERE customer_id = 'u00021'"


def own_source(settings: Settings, root: Path) -> Settings:
    """`settings` with a PostgreSQL and Connect worker of the bench's own under `root`."""
    c = dataclasses.replace(settings.local_cdc, postgres_port=free_port(), connect_port=free_port(),
                            topic_prefix=f"bench{int(time.time())}", state_dir=str(root / "cdc"))  # fmt: skip
    return dataclasses.replace(settings, file=dataclasses.replace(settings.file, local_cdc=c))


def customers_reading(settings: Settings, root: Path, topic: str) -> Settings:
    """`settings` with its lake under `root` and the customers pipeline reading `topic`."""
    file = dataclasses.replace(settings.file, lake=LakeSettings(root=str(root)),
                               pipelines={"customers": PipelineSettings(topic=topic)})  # fmt: skip
    return dataclasses.replace(settings, file=file)


def bench_cdc(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool, only: set[str]) -> list[Figure]:  # noqa: ANN001
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "100000")
    cdc = own_source(settings, scratch / "c")
    figures = []
    try:
        local_cdc.start(cdc)
        local_cdc.sql(cdc, "INSERT INTO customers (customer_id, email, full_name, country, tier) "
                           f"SELECT 'u' || lpad(i::text, 5, '0'), 'c' || i || '@example.com', 'Customer ' || i, 'US', "
                           f"({TIERS})[1 + i % 4] FROM generate_series(21, {20 + CUSTOMERS}) AS i")  # fmt: skip
        local_cdc.wait_streamed(cdc, local_cdc.commit_marker(cdc, MARKER), ("customers",))
        if "C1" in only:
            figures.append(commit_to_silver(spark, cdc, scratch / "c1", rate=50 if quick else 100, seconds=10 if quick else 30))
        if "C2" in only:
            figures.append(changes_per_second(spark, cdc, topics, scratch / "c2", 2_000 if quick else 20_000))
    finally:
        local_cdc.remove(cdc)
    return figures


def commit_to_silver(spark, cdc: Settings, root: Path, rate: float, seconds: float) -> Figure:  # noqa: ANN001
    started = time.perf_counter()
    env = customers_reading(cdc, root, local_cdc.topic(cdc, "customers"))
    project = load_project(env, ["customers"])
    queries = runner.start_all(spark, project, ["customers"], {"processingTime": "0 seconds"})
    by_name = {q.name: q for q in queries}
    layout = project.pipeline("customers").layout
    bronze, silver = layout.bronze.path, layout.silver.path
    scd1 = layout.output("customers").path  # written by the silver query, after each silver append
    bronze_query = by_name.get("customers.bronze")  # none when one query writes bronze and silver
    reads_kafka = bronze_query or by_name["customers.silver"]

    def caught_up(mark: int) -> bool:
        local_cdc.wait_streamed(cdc, mark, ("customers",))
        end = sum(kafka_admin.end_offsets(cdc.kafka, local_cdc.topic(cdc, "customers")).values())
        return wait_for(lambda: kafka_consumed(reads_kafka, end) and latest_version(silver) in followed_by(silver, scd1)
                        and (bronze_query is None or delta_consumed(by_name["customers.silver"], bronze)), 300)  # fmt: skip

    try:
        since, done = paced_load(cdc, rate, seconds, caught_up, "the customers pipeline")
        for q in queries:
            runner.raise_if_failed(q, queries)
    finally:
        for q in queries:
            q.stop()
    rows = spark.read.format("delta").load(silver).where(F.unix_millis("change_time") >= since)
    to_kafka = rows.select((F.unix_millis("kafka_timestamp") - F.unix_millis("change_time")).alias("ms")).toPandas()["ms"]
    measured = {
        "kafka": summary(to_kafka, 0),
        "silver": summary(*latencies(spark, silver, "change_time", since)),
        "scd1": summary(*latencies(spark, silver, "change_time", since, followed_by(silver, scd1))),
        "caught_up": done,
        "profile": {q.name: batch_profile(q, since) for q in queries},
    }
    minimal = minimal_commit_to_current(spark, cdc, root / "minimal", rate, seconds)
    return Figure(
        "C1", f"p99 ms commit in PostgreSQL -> current in silver's SCD1 table / the same for the minimal CDC job "
        f"(from_json, MERGE of each micro-batch's newest change per key), {rate:.0f} single-row changes/s for "
        f"{seconds:.0f} s, each running alone on the connector's topic (lower is better)",
        measured["scd1"]["p99"], minimal["current"]["p99"], unit="ms", lower_is_better=True, target=5_000,
        details={**measured, "minimal": minimal}, seconds=time.perf_counter() - started,
    )  # fmt: skip


CURRENT = ("customer_id", "email", "full_name", "country", "tier", "created_at", "updated_at")  # text, as sent
ENVELOPE = (f"before struct<customer_id string>, after struct<{', '.join(f'{c} string' for c in CURRENT)}>, "
            "source struct<lsn bigint, ts_ms bigint>, op string")  # fmt: skip


def newest_per_key(changes):  # noqa: ANN001, ANN201
    """The minimal job's transformation: each customer's newest change of the batch (by log position)."""
    by_key = Window.partitionBy("customer_id").orderBy(F.col("lsn").desc())
    return changes.withColumn("_n", F.row_number().over(by_key)).where("_n = 1").drop("_n")


def minimal_commit_to_current(spark, cdc: Settings, root: Path, rate: float, seconds: float) -> dict:  # noqa: ANN001
    """The minimal CDC job on the connector's topic (from its start, then a warm-up): commit -> current, per change."""
    topic = local_cdc.topic(cdc, "customers")
    target = str(root / "current")
    spark.createDataFrame([], ", ".join([*(f"{c} string" for c in CURRENT), "lsn bigint"])).write.format("delta").save(target)
    values = {c: f"s.{c}" for c in (*CURRENT, "lsn")}

    def merge(batch, _batch_id: int) -> None:  # noqa: ANN001
        (DeltaTable.forPath(spark, target).alias("t").merge(newest_per_key(batch).alias("s"), "t.customer_id = s.customer_id")
         .whenMatchedDelete("s.op = 'd'").whenMatchedUpdate(set=values).whenNotMatchedInsert("s.op != 'd'", values)
         .execute())  # fmt: skip

    envelope = F.from_json(F.col("value").cast("string"), ENVELOPE)
    changes = (
        minimal_source(spark, cdc.kafka, topic).where(F.col("value").isNotNull())
        .select(envelope.alias("e")).select("e.after.*", "e.op", "e.source.lsn", F.col("e.before.customer_id").alias("_b"))
        .withColumn("customer_id", F.coalesce("customer_id", "_b")).drop("_b")
    )  # fmt: skip
    q = (changes.writeStream.queryName("bench.minimal_cdc").foreachBatch(merge)
         .option("checkpointLocation", str(root / "ckpt")).start())  # fmt: skip

    def caught_up(mark: int) -> bool:
        local_cdc.wait_streamed(cdc, mark, ("customers",))
        end = sum(kafka_admin.end_offsets(cdc.kafka, topic).values())
        return wait_for(lambda: kafka_consumed(q, end), 300)

    try:
        since, done = paced_load(cdc, rate, seconds, caught_up, "the minimal CDC job")
        runner.raise_if_failed(q, [q])
    finally:
        q.stop()
    records = (
        spark.read.format("kafka").option("kafka.bootstrap.servers", cdc.kafka.bootstrap_servers)
        .option("subscribe", topic).load().where(F.col("value").isNotNull())
        .select("partition", "offset", F.from_json(F.col("value").cast("string"), ENVELOPE)["source"]["ts_ms"].alias("ts"))
        .where(F.col("ts") >= since).toPandas()
    )  # fmt: skip
    ends = kafka_batch_ends(q, topic)
    current = [first_end_past(ends, r.partition, r.offset) for r in records.itertuples()]
    ms = pd.Series([c - r.ts for c, r in zip(current, records.itertuples()) if c is not None], dtype=float)
    return {"current": summary(ms, current.count(None)), "caught_up": done, "profile": batch_profile(q, since)}


def first_end_past(ends: list[tuple[float, dict[str, int]]], partition: int, offset: int) -> float | None:
    """When the first micro-batch that took the record at (`partition`, `offset`) ended (None: none did)."""
    return min((t for t, offsets in ends if offsets.get(str(partition), -1) > offset), default=None)


def kafka_batch_ends(q, topic: str) -> list[tuple[float, dict[str, int]]]:  # noqa: ANN001
    """(end time ms, {partition: end offset}) of each micro-batch of a query reading Kafka."""
    out = []
    for p in q.recentProgress:
        if p.sources and p.sources[0].endOffset and p.numInputRows:
            out.append((progress_ms(p.timestamp) + p.durationMs.get("triggerExecution", 0),
                        json.loads(p.sources[0].endOffset).get(topic, {})))  # fmt: skip
    return out


def paced_load(cdc: Settings, rate: float, seconds: float, caught_up, who: str) -> tuple[float, bool]:  # noqa: ANN001
    """A warm-up of paced updates that `who` must take (`caught_up(log position)`), then the measured ones: (epoch ms
    when they began, whether `who` took them all)."""
    if not caught_up(paced_updates(cdc, rate, WARMUP_SECONDS)[0]):
        raise LakepipeError(f"C1: {who} did not take the warm-up changes in 300 s")
    mark, since = paced_updates(cdc, rate, seconds)
    return since, caught_up(mark)


def paced_updates(cdc: Settings, rate: float, seconds: float) -> tuple[int, float]:
    """Commit `rate` single-row updates per second for `seconds` through one psql session, then a marker; (the
    log position before the marker, epoch ms when the first update was sent)."""
    since = time.time() * 1000
    psql = local_cdc.session(cdc)
    t0 = time.monotonic()
    for i in range(int(rate * seconds)):
        ahead = t0 + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        cid = f"u{21 + i * 7919 % CUSTOMERS:05d}"
        psql.stdin.write(f"UPDATE customers SET email = '{cid}.{int(since)}.{i}@example.org', updated_at = now() "
                         f"WHERE customer_id = '{cid}';\n")  # fmt: skip
        psql.stdin.flush()
    psql.stdin.close()
    if psql.wait(60) != 0:
        raise LakepipeError(f"C1: psql failed: {psql.stderr.read().strip()[-300:]}")
    return local_cdc.commit_marker(cdc, MARKER), since


def changes_per_second(spark, cdc: Settings, topics: Topics, root: Path, n: int) -> Figure:  # noqa: ANN001
    started = time.perf_counter()
    burst = time.monotonic()
    update = (f"BEGIN; UPDATE customers SET tier = ({TIERS})[1 + floor(random() * 4)::int], updated_at = now() "
              "WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY random() LIMIT 100); COMMIT;")  # fmt: skip
    local_cdc.sql(cdc, "\n".join([update] * (n // 100)))
    committed = time.monotonic() - burst
    local_cdc.wait_streamed(cdc, local_cdc.commit_marker(cdc, MARKER), ("customers",), timeout=600)
    streamed = time.monotonic() - burst
    topic = local_cdc.topic(cdc, "customers")
    generator = CdcGenerator(seed=5, customers=CUSTOMERS + 20, changes_per_hour=3600 * 100)
    if common.WARM_UP:  # the first run of a JVM is slow (code generation, class loading): not the real side's cost
        warm = topics.new("c2-warm")
        publish(generator.events(), KafkaSink(cdc.kafka, warm, Tally()), count=2_000)
        once(spark, customers_reading(cdc, root / "warm", warm))
    ours = once(spark, customers_reading(cdc, root / "real", topic))
    simulated = topics.new("c2")
    publish(generator.events(), KafkaSink(cdc.kafka, simulated, Tally()), count=ours["records"])
    base = once(spark, customers_reading(cdc, root / "simulated", simulated))
    return Figure(
        "C2", f"changes/s into SCD1 and SCD2, one --once run over the connector's topic ({ours['records']:,} changes: "
        f"snapshot, 1,000 inserts, C1's updates and a burst of {n:,}) / over as many simulated envelopes",
        ours["rate"], base["rate"], unit="changes/s",
        details={"real": ours, "simulated": base, "burst_commit_s": round(committed, 1),
                 "connector_changes_per_s": round(n / streamed)},
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def once(spark, env: Settings) -> dict:  # noqa: ANN001
    """One `--once` run of the customers pipeline: records in, seconds, changes per second, stage seconds."""
    project = load_project(env, ["customers"])
    t0 = time.perf_counter()
    result = runner.run(spark, project, ["customers"], once=True)
    seconds = time.perf_counter() - t0
    records = spark.read.format("delta").load(project.pipeline("customers").layout.bronze.path).count()
    return {"records": records, "seconds": round(seconds, 1), "rate": round(records / seconds),
            "stage_seconds": [round(s, 1) for s in result.stage_seconds]}  # fmt: skip
