"""`python -m pipelines.bench [--quick] [--only P2,L1]`: run the benchmarks, print and save the table."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.bench import common, latency
from pipelines.bench.backfill import bench_backfill
from pipelines.bench.cdc import bench_cdc
from pipelines.bench.common import Figure, Topics
from pipelines.bench.cpu import bench_cpu_per_record
from pipelines.bench.event_log_cost import bench_event_log_cost
from pipelines.bench.files import bench_files
from pipelines.bench.growth import bench_growth, bench_growth_pipeline, bench_silver_growth, files_after_long_run
from pipelines.bench.latency import bench_latency
from pipelines.bench.producer import bench_producer
from pipelines.bench.report import machine, report
from pipelines.bench.stages import bench_bronze, bench_gold, bench_quality, bench_typed
from pipelines.bench.sustained import bench_sustained
from pipelines.errors import LakepipeError
from pipelines.model.config import CatalogSettings, Settings, load_settings
from pipelines.platform import kafka_admin, session
from pipelines.platform.jars import PROJECT_DIR
from pipelines.platform.session import JVM_LOG_ENV, spark_session

SIZES = {  # records (seconds of measured load for L1; S2: new events, rows already in silver)
    "quick": {"repeats": 1, "P1": 20_000, "P2": 30_000, "P3": 5_000, "P4": 5_000, "L1": 3,
              "S1": (10_000, 20_000, 40_000), "S1e": (5_000, 10_000), "S2": (5_000, 500_000), "S2d": (5_000, 500_000), "B1": 20_000},
    "full": {"repeats": 3, "P1": 300_000, "P2": 2_000_000, "P3": 50_000, "P4": 50_000, "L1": 30,
             "S1": (500_000, 1_000_000, 2_000_000), "S1e": (25_000, 50_000, 100_000), "S2": (50_000, 10_000_000), "S2d": (50_000, 10_000_000),
             "B1": 200_000},
}  # fmt: skip
FIGURES = ("P1", "P2", "P3", "P5", "E1", "E1m", "E1c", "L1", "L1e", "P4", "S1", "S1e", "S2", "S2d", "C1", "C2", "B1", "F1", "EL")
QUICK_FIGURES = ("P1", "P2", "P3", "P5", "L1e", "P4", "S1")  # a few minutes on 2 cores


class Timed:
    """Runs one figure (or a group measured together) and times it. A figure that fails is reported in one line and
    left out, so that an hour-long `make bench` keeps the others (`failed`: what failed, and why)."""

    def __init__(self, spark_streams: Callable[[], list] = list) -> None:
        self.failed: dict[str, str] = {}
        self.streams = spark_streams

    def __call__(self, fn: Callable[[], Figure | list[Figure]], what: str = "") -> list[Figure]:
        start = time.perf_counter()
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - one figure's failure must not lose the others'
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"
            self.failed[what or fn.__name__] = reason
            log = f" (full log: {session.log_file()})" if session.log_file() else ""
            print(f"error: {what} not measured ({reason}){log}; the other figures go on", file=sys.stderr, flush=True)
            for q in self.streams():  # a failed figure may leave its queries running
                q.stop()
            return []
        figures = out if isinstance(out, list) else [out]
        for f in figures:  # figures measured together share the time, unless they timed themselves
            f.seconds = f.seconds or (time.perf_counter() - start) / len(figures)
        return figures


def run_bench(settings: Settings, quick: bool, only: set[str]) -> str:
    size = SIZES["quick" if quick else "full"]
    common.REPEATS, common.WARM_UP = size["repeats"], not quick
    latency.WARMUP_SECONDS = 0 if quick else 10
    scratch = Path(settings.lake_root) / "_bench"
    shutil.rmtree(scratch, ignore_errors=True)  # a run that was killed leaves its tables and checkpoints
    scratch.mkdir(parents=True, exist_ok=True)
    topics = Topics(settings.kafka)
    figures: list[Figure] = []
    rates: dict[str, float] = {}
    timed = Timed()
    try:
        if "P1" in only:
            figures += timed(lambda: bench_producer(settings.kafka, topics, size["P1"], scratch), "P1")
        with spark_session(settings, "lakepipe-bench") as spark:
            timed.streams = lambda: spark.streams.active
            if session.log_file():
                print(f"Spark's log: {session.log_file()}", file=sys.stderr, flush=True)
            if {"P2", "L1"} & only and (got := timed(lambda: bench_bronze(spark, settings.kafka, topics, size["P2"], scratch), "P2")):
                figures += got
                rates["L1"] = got[-1].ours / 2  # half the highest bronze rate
            if ("P3" in only or ("L1e" in only and "E1" not in only)) and (
                got := timed(lambda: bench_quality(spark, settings.kafka, topics, size["P3"], scratch), "P3")
            ):  # fmt: skip
                figures += got
                rates["L1e"] = got[-1].ours / 2  # half the highest silver rate, unless E1 runs
            if "P5" in only:
                figures += timed(lambda: bench_typed(spark, settings.kafka, topics, size["P3"], scratch), "P5")
            if "E1" in only and (got := timed(lambda: bench_sustained(spark, settings, topics, scratch, quick), "E1")):
                figures += got
                rates["L1e"] = max(got[-1].ours, 1_000) / 2  # half the highest sustained rate
            if "E1m" in only:  # the same harness with the minimal silver job in place of ours (where E1's goal stands)
                figures += timed(lambda: bench_sustained(spark, settings, topics, scratch, quick, minimal=True), "E1m")
            if "E1c" in only:  # CPU per record at a fixed rate: ours / E1m's pipeline (a measure finer than E1's bisection)
                figures += timed(lambda: bench_cpu_per_record(spark, settings, topics, scratch, quick), "E1c")
            if {"L1", "L1e"} & only:
                chosen = {k: v for k, v in rates.items() if k in only}
                figures += timed(lambda: bench_latency(spark, settings, topics, chosen, size["L1"], scratch), "/".join(chosen))
            if l1e := next((f for f in figures if f.name == "L1e"), None):
                l1e.details["files"] = files_after_long_run(spark, settings, Path(l1e.details["root"]))
            if "P4" in only:
                figures += timed(lambda: bench_gold(spark, settings.kafka, topics, size["P4"], scratch), "P4")
            if "S1" in only:
                figures += timed(lambda: bench_growth(spark, settings, topics, size["S1"], scratch), "S1")
            if "S1e" in only:
                figures += timed(lambda: bench_growth_pipeline(spark, settings, topics, size["S1e"], scratch), "S1e")
            if "S2" in only:
                figures += timed(lambda: bench_silver_growth(spark, settings.kafka, topics, *size["S2"], scratch), "S2")
            if "S2d" in only:
                figures += timed(lambda: bench_silver_growth(spark, settings.kafka, topics, *size["S2d"], scratch, dense=True), "S2d")
            if "B1" in only:
                figures += timed(lambda: bench_backfill(spark, settings, topics, size["B1"], scratch), "B1")
            if "EL" in only:
                figures += timed(lambda: bench_event_log_cost(spark, settings, topics, scratch, quick), "EL")
            if "F1" in only:
                figures += timed(lambda: bench_files(spark, settings, topics, scratch, quick), "F1")
            if {"C1", "C2"} & only:
                figures += timed(lambda: bench_cdc(spark, settings, topics, scratch, quick, only), "/".join(sorted({"C1", "C2"} & only)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        topics.delete_all()
    default = set(QUICK_FIGURES if quick else FIGURES)
    command = "make bench" + (" QUICK=1" if quick else "") + ("" if only == default else f" ONLY={','.join(sorted(only))}")
    return report(figures, machine(), command, PROJECT_DIR / "bench-results", common.REPEATS, timed.failed)


def main() -> None:
    parser = argparse.ArgumentParser(description="lakepipe benchmarks (not tests: they never fail the suite)")
    parser.add_argument("--quick", action="store_true", help=f"small sizes, one run per side, {', '.join(QUICK_FIGURES)} only: a smoke run, under 5 minutes")
    parser.add_argument("--only", help=f"comma-separated figures among {', '.join(FIGURES)} (default: all)")
    parser.add_argument("--env", help="environment (default: local)")
    parser.add_argument("--verbose", action="store_true", help="Spark's log and Python workers' output on the console "
                        "(default: in a file under .lakepipe/logs, named when the run starts)")  # fmt: skip
    args = parser.parse_args()
    if not args.verbose:
        os.environ[JVM_LOG_ENV] = "file"  # as `lakepipe` commands do: the console is for the figures
    only = set(args.only.split(",")) if args.only else set(QUICK_FIGURES if args.quick else FIGURES)
    if unknown := only - set(FIGURES):
        parser.error(f"unknown figure(s) {', '.join(sorted(unknown))}: choose among {', '.join(FIGURES)}")
    try:
        # The figures measure the pipelines: their tables are not registered in a catalog (one step per start).
        settings = load_settings(args.env)
        settings = dataclasses.replace(settings, file=dataclasses.replace(settings.file, catalog=CatalogSettings(enabled=False)))
        kafka_admin.list_topics(settings.kafka)  # one clear line if the broker is not reachable
    except LakepipeError as exc:
        sys.exit(f"error: {exc}")
    print(run_bench(settings, args.quick, only))


if __name__ == "__main__":
    main()
