"""EL: what the event log costs the whole pipeline, as CPU per event, with it on and off side by side.

E1 (the sustained rate) is a bracket of rates, 25% apart after its bisection: far too coarse to see a 3% cost.
On this machine E1 is bound by CPU (vmstat: 85-96% user while it runs), so the event log's share of E1 is its
share of the CPU each event needs. The whole clickstream pipeline runs continuously at a fixed rate (half of
E1's) on the environment's trigger; after a warm-up, windows of 60 s alternate: event log off, on, off, on
(`EventLog` attached to and detached from the running queries, flushing every `event_log.flush_interval` as in
`lakepipe run`). Each window's CPU seconds are the driver JVM's and this Python process's (Spark's Python
workers, the broker and the producer do the same work either way, so leaving them out can only make the
event log's share look larger). Figure: CPU per 1,000 events with it on / off (lower is better; goal 1.03).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

from pipelines.bench.common import DriverMemory, Figure, Topics, payloads
from pipelines.bench.latency import PacedSender, pipeline_settings
from pipelines.engine import runner
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import load_project
from pipelines.ops.event_log import EventLog

RATE = 1_250  # events/s: half of E1 (2,500/s sustained on 2 cores)
WARMUP_SECONDS = 40
WINDOW_SECONDS = 60
ORDER = (False, True, False, True)  # event log off, on, off, on


def cpu_seconds(jvm_pid: int) -> float:
    """CPU time so far of the driver JVM and of this Python process (user + system)."""
    fields = Path(f"/proc/{jvm_pid}/stat").read_text().rsplit(")", 1)[1].split()
    jvm = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    own = os.times()
    return jvm + own.user + own.system


def bench_event_log_cost(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool) -> Figure:  # noqa: ANN001
    window, warmup = (20, 15) if quick else (WINDOW_SECONDS, WARMUP_SECONDS)
    topic = topics.new("el")
    trigger = settings.streaming.trigger_interval  # as `lakepipe run` runs it
    env = pipeline_settings(settings, scratch / "el", topic, trigger)
    queries = runner.start_all(spark, load_project(env, ["clickstream"]), ["clickstream"], {"processingTime": trigger})
    memory = DriverMemory(spark)
    total = int(RATE * (warmup + window * len(ORDER) + 10))
    values = payloads(total, seed=9, event_times=(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), RATE))
    sender = PacedSender(settings.kafka, topic, values, RATE)
    windows: dict[bool, list[float]] = {False: [], True: []}
    try:
        with memory.sampled():
            sender.start()
            time.sleep(warmup)
            for on in ORDER:
                log = EventLog(spark, env).start() if on else None
                sent, cpu = sender.sent, cpu_seconds(memory.pid)
                time.sleep(window)
                for q in queries:
                    runner.raise_if_failed(q, queries)
                events = sender.sent - sent
                windows[on].append(round((cpu_seconds(memory.pid) - cpu) / events * 1000, 4))
                if log is not None:
                    log.stop()  # its last flush counts in the next window (off): a cost against "off", never hidden
            if sender.error:
                raise LakepipeError(f"paced producer failed: {sender.error}")
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
        sender.join(timeout=1)
    return Figure.of_runs("EL", f"CPU s per 1,000 events, whole clickstream pipeline at {RATE:,} events/s (driver JVM + "
                          f"Python), {window} s windows alternating: event log on / off (lower is better)",
                          windows[True], windows[False], unit="CPU s / 1k events", lower_is_better=True,
                          peak_rss_mb=memory.peak_mb, target=1.03, details={"windows_on": windows[True],
                          "windows_off": windows[False]})  # fmt: skip
