"""C1 and C2: the customers pipeline on the real change-data-capture source (PostgreSQL -> Debezium -> Kafka).

Both run against a PostgreSQL and a Kafka Connect worker of their own (ports, topics and state under the bench's
scratch folder), with 1,000 more customers than the shop's 20, so the user's `lakepipe cdc` data is not touched.
- C1: single-row updates committed at a steady rate through one psql session while the customers pipeline runs
  continuously (micro-batches back to back). Per change, from its commit (`source.ts_ms`, PostgreSQL's commit
  time, on the same clock): to the Kafka record (the connector alone: the baseline), to silver (the Delta commit
  of the row's file), and to current in the SCD1 table (the end of the first SCD1 micro-batch whose source
  offset covers the silver version holding the change). Only changes after a warm-up are measured.
- C2: a burst of changes (100-row UPDATEs, one transaction each), streamed by the connector, then one `--once`
  run of the customers pipeline over the connector's topic: changes per second into SCD1/SCD2; beside it the
  same run over as many simulated envelopes (the customers simulator).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from pyspark.sql import functions as F

from pipelines.bench import common
from pipelines.bench.common import Figure, Topics
from pipelines.bench.latency import (
    batch_profile,
    delta_consumed,
    kafka_consumed,
    latencies,
    summary,
    wait_for,
)
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
        if not caught_up(paced_updates(cdc, rate, WARMUP_SECONDS)[0]):
            raise LakepipeError("C1: the customers pipeline did not take the warm-up changes in 300 s")
        mark, since = paced_updates(cdc, rate, seconds)
        done = caught_up(mark)
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
    }
    return Figure(
        "C1", f"p99 ms commit in PostgreSQL -> current in silver's SCD1 table / commit -> Kafka record (the connector "
        f"alone), {rate:.0f} single-row changes/s for {seconds:.0f} s, customers pipeline running (lower is better)",
        measured["scd1"]["p99"], measured["kafka"]["p99"], unit="ms", lower_is_better=True, target=5_000,
        details={**measured, "caught_up": done, "profile": {q.name: batch_profile(q, since) for q in queries}},
        seconds=time.perf_counter() - started,
    )  # fmt: skip


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
