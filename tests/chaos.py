"""`make chaos`: SIGKILL a continuous run of all four pipelines at random moments, drain, check every invariant.

Each trial starts on a fresh lake with fresh topics on the local broker. While the four simulators send with faults
(re-sends, conflicting copies, malformed records, out-of-order events), `lakepipe run clickstream iot payments
customers` runs in a process of its own and is SIGKILLed `--kills` times at random moments: during start-up, or
a random fraction of a second to a few seconds after a random table's commit. A `--once` run then drains, and the
invariants are checked for every pipeline:

- bronze holds every acknowledged record once: its rows = the simulator's acks = the topic's end offsets, and
  (topic, partition, offset) is unique;
- silver is unique per dedup key; quarantine unique per Kafka position;
- silver + quarantine + exact duplicates + dropped + tombstones = bronze, and the audit (one row per silver batch)
  agrees with each table;
- quality results: one row per rule per silver batch;
- gold: every windowed aggregate equals the same aggregate recomputed over silver in one batch, the clickstream
  sessions equal sessions recomputed over silver, the SCD1 and SCD2 tables equal the latest change per key and the
  versions per key, and every other upserted output is unique per key (revenue per tier is rebuilt from the
  customer history as it was at its batch, so it is not compared with today's).

    python -m tests.chaos [--trials N] [--kills K] [--seed S]     (make chaos; QUICK=1 runs 3 trials of 1 kill)

Not part of `make test`: the default of 7 trials of 3 kills takes ~36 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from chispa import DataFramesNotEqualError, assert_approx_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.domains import SimulatorOptions, domain
from pipelines.domains.clickstream.gold import activity_per_minute, revenue_per_minute
from pipelines.domains.iot.gold import device_stats, site_stats
from pipelines.domains.payments.gold import merchant_volume_per_minute
from pipelines.engine.cdc import scd1_current, scd2_history
from pipelines.model.config import Settings, load_settings
from pipelines.model.project import Pipeline, load_project
from pipelines.platform import kafka_admin
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests.conftest import write_conf
from tests.integration.test_exactly_once import commits, start_pipeline
from tests.support import batch_sessions, run_once

PIPELINES = ("clickstream", "iot", "payments", "customers")
FAULTS = {  # per pipeline: its simulator's fault flags and rates (none that the watermark would leave out of gold)
    "clickstream": {"duplicates": 0.03, "conflicts": 0.02, "malformed": 0.04, "out_of_order": 0.05},
    "iot": {"duplicates": 0.03, "malformed": 0.04, "anomalies": 0.01},
    "payments": {"duplicates": 0.03, "malformed": 0.04, "fraud": 0.02},
    "customers": {"duplicates": 0.03, "malformed": 0.04, "out_of_order": 0.05},
}
RECOMPUTED = {  # output -> the same aggregate over all of silver, in one batch
    "clickstream_revenue_per_minute": revenue_per_minute,
    "clickstream_activity_per_minute": activity_per_minute,
    "clickstream_sessions": batch_sessions,
    "iot_device_minute_stats": device_stats,
    "iot_site_5min_stats": site_stats,
    "payments_merchant_volume_per_minute": merchant_volume_per_minute,
    "customers": scd1_current,
    "customers_history": scd2_history,
}
RATE = 15  # events per second per pipeline while the run is killed again and again


@dataclass
class Trial:
    number: int
    kill_points: list[str] = field(default_factory=list)
    results: list[tuple[str, str, bool, str]] = field(default_factory=list)  # pipeline, invariant, held, detail

    @property
    def held(self) -> bool:
        return all(ok for _, _, ok, _ in self.results)


def trial_settings(root: Path) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    topics = {name: f"chaos.{name}.{suffix}" for name in PIPELINES[1:] + ("orders",)}
    return load_settings("test", write_conf(root / "conf", f"chaos.clickstream.{suffix}", topics=topics))


def kill_at_random(settings: Settings, project_tables: list[Path], log: Path, rng: random.Random) -> str:
    """Start a continuous run, SIGKILL it at a random moment; return where that moment fell."""
    started = time.monotonic()
    proc = start_pipeline(settings.source.parent, log, PIPELINES)
    try:
        if rng.random() < 0.3:  # during start-up: JVM, table creation, the first batches' planning
            time.sleep(rng.uniform(3, 30))
            point = "start-up"
        else:
            table = rng.choice(project_tables)
            before = commits(table)
            deadline = time.monotonic() + 240
            while commits(table) == before and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
            delay = rng.choice([0.0, rng.uniform(0, 0.5), rng.uniform(0.5, 4)])
            time.sleep(delay)
            point = f"{delay:.2f} s after a commit of {table.parent.name}/{table.name}"
        if proc.poll() is not None:
            raise RuntimeError(f"the run ended by itself (exit {proc.returncode}); see {log}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(60)
    return f"{time.monotonic() - started:5.1f} s after the start, {point}"


def send_all(settings: Settings, seed: int, seconds: float) -> tuple[list[threading.Thread], dict[str, Tally]]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    tallies, threads = {}, []
    for i, name in enumerate(PIPELINES):
        source = domain(name).simulator(SimulatorOptions(seed + i, start, RATE, FAULTS[name]))
        topic = load_project(settings, [name]).topic(name)
        tallies[name] = Tally()
        sink = KafkaSink(settings.kafka, topic, tallies[name])
        t = threading.Thread(target=publish, args=(source.events(), sink), kwargs={"seconds": seconds, "rate": RATE})
        t.start()
        threads.append(t)
    return threads, tallies


def check(spark: SparkSession, p: Pipeline, tally: Tally, kafka) -> list[tuple[str, bool, str]]:  # noqa: ANN001
    """Every invariant of one pipeline after the drain: (name, held, detail)."""
    out = []

    def expect(name: str, ok: bool, detail: str) -> None:
        out.append((name, bool(ok), detail))

    read = lambda t: spark.read.format("delta").load(t.path)  # noqa: E731
    acked = sum(tally.delivered.values())
    ends = sum(kafka_admin.end_offsets(kafka, p.topic).values())
    bronze = read(p.layout.bronze)
    n_bronze = bronze.count()
    positions = bronze.select("topic", "partition", "offset").distinct().count()
    expect("bronze = acked records", n_bronze == acked == ends, f"bronze {n_bronze}, acked {acked}, end offsets {ends}")
    expect("Kafka position unique in bronze", positions == n_bronze, f"{positions} distinct of {n_bronze}")

    silver, quarantine = read(p.layout.silver), read(p.layout.quarantine)
    n_silver, n_quarantine = silver.count(), quarantine.count()
    keys = list(p.spec.dedup_keys)
    distinct_keys = silver.select(*keys).distinct().count()
    expect(f"silver unique per {', '.join(keys)}", distinct_keys == n_silver, f"{distinct_keys} keys, {n_silver} rows")
    q_positions = quarantine.select("partition", "offset").distinct().count()
    expect("quarantine unique per position", q_positions == n_quarantine, f"{q_positions} of {n_quarantine}")

    audit = read(p.layout.batches)
    sums = audit.groupBy().agg(*[F.coalesce(F.sum(c), F.lit(0)).alias(c) for c in (
        "bronze_records", "silver_records", "quarantined_records", "exact_duplicates", "dropped_records", "tombstones")]
    ).first().asDict()  # fmt: skip
    batches = audit.select("query_id", "batch_id").distinct().count()
    expect("one audit row per silver batch", batches == audit.count(), f"{batches} batches, {audit.count()} rows")
    skipped = sums["exact_duplicates"] + sums["dropped_records"] + sums["tombstones"]
    expect("silver + quarantine + duplicates + dropped + tombstones = bronze",
           n_silver + n_quarantine + skipped == n_bronze == sums["bronze_records"],
           f"{n_silver} + {n_quarantine} + {skipped} vs bronze {n_bronze}, audit {sums['bronze_records']}")  # fmt: skip
    expect("audit agrees with silver and quarantine",
           (sums["silver_records"], sums["quarantined_records"]) == (n_silver, n_quarantine),
           f"audit {sums['silver_records']}/{sums['quarantined_records']}, tables {n_silver}/{n_quarantine}")  # fmt: skip

    if p.suite is not None:
        silver_batches = {(r.query_id.removeprefix("silver-"), r.batch_id) for r in audit.collect()}
        quality = read(p.layout.quality).where(F.col("pipeline") == p.name)
        rows = quality.count()
        per_batch = {(r.query_id, r.batch_id) for r in quality.select("query_id", "batch_id").distinct().collect()}
        expected = len(silver_batches) * len(p.suite.rules)
        expect("quality: one row per rule per silver batch", rows == expected and per_batch == silver_batches,
               f"{rows} rows for {len(silver_batches)} batches x {len(p.suite.rules)} rules")  # fmt: skip

    upserted = {o.name: o.upsert.keys for o in p.spec.outputs if o.upsert}
    for t in p.layout.outputs:
        gold = read(t)
        if t.name in RECOMPUTED:
            try:
                again = RECOMPUTED[t.name](silver).select(*gold.columns)
                # averages of doubles summed in another order (micro-batch partial sums) differ in the last bits
                assert_approx_df_equality(gold, again, 1e-6, ignore_row_order=True, ignore_nullable=True)
                expect(f"{t.name} = recomputed over silver", True, f"{gold.count()} rows")
            except (AssertionError, DataFramesNotEqualError) as exc:
                lines = [ln for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip(" |+-")]
                expect(f"{t.name} = recomputed over silver", False, (lines or ["?"])[0][:300])
        elif t.name in upserted:  # a rebuild's key names what it rebuilds, not a unique key
            keys = upserted[t.name]
            n, distinct = gold.count(), gold.select(*keys).distinct().count()
            expect(f"{t.name} unique per {', '.join(keys)}", n == distinct, f"{distinct} keys, {n} rows")
    return out


def run_trial(spark: SparkSession, number: int, kills: int, rng: random.Random, root: Path) -> Trial:
    trial = Trial(number)
    settings = trial_settings(root / f"trial-{number}")
    project = load_project(settings, list(PIPELINES))
    for name in PIPELINES:
        kafka_admin.ensure_topic(settings.kafka, project.topic(name))
    tables = [Path(t.path) for n in PIPELINES for t in (project.pipeline(n).layout.bronze,
              project.pipeline(n).layout.silver, *project.pipeline(n).layout.outputs)]  # fmt: skip
    log = root / f"trial-{number}.log"
    senders, tallies = send_all(settings, seed=1000 * number, seconds=45 * kills)
    for k in range(kills):
        trial.kill_points.append(kill_at_random(settings, tables, log, rng))
        print(f"  trial {number}, kill {k + 1}: {trial.kill_points[-1]}", flush=True)
    for t in senders:
        t.join()
    failed = {n: dict(t.failed) for n, t in tallies.items() if t.failed}
    if failed:
        raise RuntimeError(f"the simulators could not deliver: {failed}")
    run_once(spark, settings, list(PIPELINES))
    project = load_project(settings, list(PIPELINES))
    for name in PIPELINES:
        for invariant, ok, detail in check(spark, project.pipeline(name), tallies[name], settings.kafka):
            trial.results.append((name, invariant, ok, detail))
    return trial


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs per trial before its drain")
    parser.add_argument("--seed", type=int, default=None, help="the kill moments' seed (default: random, printed)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    from pipelines.model.config import SparkSettings
    from pipelines.platform.session import get_spark, jvm_output_to, stop_spark

    root = Path(tempfile.mkdtemp(prefix="lakepipe-chaos-"))
    print(f"chaos: {args.trials} trials of {args.kills} SIGKILLs of `lakepipe run {' '.join(PIPELINES)}` "
          f"(seed {seed}); lakes and logs in {root}", flush=True)  # fmt: skip
    spark = get_spark(SparkSettings(master="local[2]", shuffle_partitions=2, driver_memory="3g"), "lakepipe-chaos")
    jvm_output_to(spark, root / "harness-jvm.log")  # the drains' Python workers print a line per call: not here
    trials = []
    try:
        for number in range(1, args.trials + 1):
            started = time.monotonic()
            trial = run_trial(spark, number, args.kills, rng, root)
            trials.append(trial)
            broken = [f"{p}: {inv} ({detail})" for p, inv, ok, detail in trial.results if not ok]
            verdict = "all invariants held" if trial.held else "BROKEN: " + "; ".join(broken)
            print(f"trial {number}: {len(trial.results)} invariants checked, {verdict} "
                  f"({time.monotonic() - started:.0f} s)", flush=True)  # fmt: skip
    finally:
        stop_spark(spark)
    kills = sum(len(t.kill_points) for t in trials)
    held = sum(t.held for t in trials)
    checks = sum(len(t.results) for t in trials)
    print(f"chaos: {len(trials)} trials, {kills} SIGKILLs, {checks} invariant checks: "
          f"{held} of {len(trials)} trials held every invariant", flush=True)  # fmt: skip
    return 0 if held == len(trials) == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
