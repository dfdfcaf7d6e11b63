"""E1c: the driver's CPU per record of the whole clickstream pipeline at a fixed rate that both sides keep up with.

E1 (`pipelines.bench.sustained`) answers with a rate found by bisection, whose verdicts move by a bracket step
with the hour and with how busy the JIT compiler still is; a change worth 5% of silver's cost does not show in it.
E1c runs the pipeline as `lakepipe run` does (trigger 5 s) at `RATE` for `SECONDS`, and divides the driver JVM's
CPU time over the last `MEASURED_SECONDS` (the process's own, from /proc: tasks, planning, JIT, GC) by the
records sent meanwhile. The baseline is the same for E1m's pipeline: the minimal typed silver job reading Kafka
with our three gold queries on its table, which sustains E1's goal. Ours runs first, then the baseline, in the
same JVM; each side's JIT compile seconds and the Python process's CPU (the sender's and silver's `foreachBatch`
calls) are in the details, with the JVM's CPU split by what its threads do (`thread_groups`: tasks, the JIT
compiler, the garbage collector, the queries' own threads, the scheduler, calls from Python) and the CPU of the
Python workers the JVM runs (the sessions query's pandas state, the suite's conversions).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter
from pathlib import Path

from pipelines.bench.common import DriverMemory, Figure, Topics, payloads
from pipelines.bench.latency import PacedSender, pipeline_settings, wait_for
from pipelines.bench.stages import start_minimal_pipeline
from pipelines.bench.sustained import DRAIN_SECONDS, Trial, jit_seconds
from pipelines.engine import runner
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import load_project

RATE = 2_500  # below what either side sustains (E1 4,375-7,500/s on 2 cores): micro-batches of the same size
SECONDS = 300
MEASURED_SECONDS = 180  # the last 3 minutes: the first 2 hold the start and the JIT's heaviest minutes


def cpu_seconds(spark) -> float:  # noqa: ANN001
    """CPU seconds the driver JVM process has used so far (user and system, every thread), from /proc as the peak
    RSS is (`RssSampler`): the JVM's own beans for it are not open to reflection from py4j."""
    own, _ = _ticks(Path(f"/proc/{jvm_pid(spark)}/stat").read_text())  # utime, stime
    return own / os.sysconf("SC_CLK_TCK")


# What a driver JVM thread does, by its name as /proc gives it (cut to 15 characters): the first group whose prefix
# it starts with. Threads of no group, and threads that ended during the window, are the rest ("other").
THREAD_GROUPS = (
    ("tasks", ("Executor task",)),
    ("JIT compiler", ("C1 CompilerThre", "C2 CompilerThre")),
    ("garbage collector", ("GC Thread", "VM Thread")),
    ("query threads (planning, state, commits)", ("stream executio",)),
    ("scheduler and listeners", ("dag-scheduler", "task-result-get", "dispatcher-", "spark-listener")),
    ("calls from Python (foreachBatch)", ("Thread-",)),
)
OTHER = "other"


def _ticks(stat: str) -> tuple[int, int]:
    """(own CPU ticks, ticks of its ended and waited-for children) from a /proc stat line (pure)."""
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def thread_cpu(pid: int) -> dict[str, tuple[str, float]]:
    """CPU seconds each live thread of process `pid` has used so far: {thread id: (name, seconds)}."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            own, _ = _ticks(Path(f"/proc/{pid}/task/{tid}/stat").read_text())
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = (name, own / os.sysconf("SC_CLK_TCK"))
    return out


def thread_groups(before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]], total_s: float) -> dict[str, float]:
    """CPU seconds per THREAD_GROUPS group between two `thread_cpu` readings, and OTHER: the rest of `total_s`, the
    process's CPU over the same time (pure)."""
    groups: Counter = Counter()
    for tid, (name, seconds) in after.items():
        used = seconds - before.get(tid, (name, 0.0))[1]
        group = next((g for g, prefixes in THREAD_GROUPS if name.startswith(prefixes)), None)
        if group is not None:
            groups[group] += used
    out = {g: round(groups[g], 1) for g, _ in THREAD_GROUPS}
    out[OTHER] = round(max(total_s - sum(groups.values()), 0.0), 1)
    return out


def processes() -> tuple[dict[int, str], dict[int, list[int]]]:
    """Every process's /proc stat line by pid, and the pids of each process's children."""
    kids: dict[int, list[int]] = {}
    stats: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # it ended meanwhile
                continue
            stats[int(entry)] = stat
            kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    return stats, kids


def children_cpu(pid: int) -> float:
    """CPU seconds used so far by the processes `pid` started (the JVM's Python workers and the daemon that forks
    them) and by their children, ended ones included (their parent waited for them)."""
    stats, kids = processes()
    ticks, todo = 0, list(kids.get(pid, []))
    while todo:
        child = todo.pop()
        own, ended = _ticks(stats[child])
        ticks += own + ended
        todo += kids.get(child, [])
    return ticks / os.sysconf("SC_CLK_TCK")


def jvm_pid(spark) -> int:  # noqa: ANN001
    return spark._jvm.java.lang.ProcessHandle.current().pid()  # noqa: SLF001


def per_record_us(cpu_s: float, records: int) -> float:
    """Microseconds of CPU per record (pure)."""
    if records <= 0:
        raise LakepipeError("no records were sent in the measured window")
    return cpu_s / records * 1e6


def _measure(spark, settings: Settings, topic: str, queries: list, seconds: float, measured: float) -> dict:  # noqa: ANN001
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sender = PacedSender(settings.kafka, topic, payloads(int(RATE * seconds), seed=11, event_times=(start, 1000)), RATE)
    sender.start()
    try:
        time.sleep(seconds - measured)
        pid = jvm_pid(spark)
        sent0, cpu0, jit0, py0 = sender.sent, cpu_seconds(spark), jit_seconds(spark), sum(os.times()[:2])
        threads0, workers0 = thread_cpu(pid), children_cpu(pid)
        t0 = time.monotonic()
        sender.join()
        if sender.error:
            raise LakepipeError(f"paced producer failed: {sender.error}")
        elapsed = time.monotonic() - t0
        records = sender.sent - sent0
        cpu, jit, py = cpu_seconds(spark) - cpu0, jit_seconds(spark) - jit0, sum(os.times()[:2]) - py0
        groups, workers = thread_groups(threads0, thread_cpu(pid), cpu), children_cpu(pid) - workers0
        for q in queries:
            runner.raise_if_failed(q, queries)
        # stopped idle, not in the middle of a micro-batch; and a side that fell behind shows as not drained
        backlog = Trial(settings, topic, {q.name: q for q in queries}, sender.sent)
        drained = wait_for(lambda: all(v <= 0 for v in backlog.backlogs(0).values()), DRAIN_SECONDS)
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
    return {"us_per_record": round(per_record_us(cpu, records), 1), "records": records, "seconds": round(elapsed, 1),
            "jvm_cpu_s": round(cpu, 1), "jit_s": round(jit, 1), "python_cpu_s": round(py, 1), "drained": drained,
            "jvm_cpu_s_by_thread": groups, "python_workers_cpu_s": round(workers, 1)}  # fmt: skip


def bench_cpu_per_record(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool) -> Figure:  # noqa: ANN001
    """E1c: ours / E1m's pipeline, driver CPU per record at RATE."""
    seconds, measured = (60, 30) if quick else (SECONDS, MEASURED_SECONDS)
    trigger = {"processingTime": settings.streaming.trigger_interval}
    memory = DriverMemory(spark)
    with memory.sampled():
        topic = topics.new("e1c")
        env = pipeline_settings(settings, scratch / "e1c", topic, settings.streaming.trigger_interval)
        ours = _measure(spark, settings, topic, runner.start_all(spark, load_project(env, ["clickstream"]), ["clickstream"], trigger),
                        seconds, measured)  # fmt: skip
        topic = topics.new("e1c-min")
        base = _measure(spark, settings, topic, start_minimal_pipeline(spark, settings.kafka, topic, scratch / "e1c-min", trigger),
                        seconds, measured)  # fmt: skip
    return Figure("E1c", f"driver CPU per record, the whole clickstream pipeline at {RATE:,} events/s (last {measured} s of "
                  f"{seconds} s) / the same with the minimal typed silver job in place of bronze and silver (E1m's pipeline)",
                  ours["us_per_record"], base["us_per_record"], unit="µs/record", peak_rss_mb=memory.peak_mb,
                  lower_is_better=True, details={"ours": ours, "baseline": base})  # fmt: skip
