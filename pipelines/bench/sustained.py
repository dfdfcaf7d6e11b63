"""E1: the highest producer rate the whole clickstream pipeline sustains on this machine.

The pipeline (bronze, silver with its suite, the three gold queries) runs continuously in one application,
with the environment's trigger interval, as `lakepipe run` runs it (5 s locally: each query takes what arrived
since its last micro-batch, so fixed per-batch costs do not multiply). Trials send at a fixed rate for a
warm-up then a measured window. Each stage's backlog is the records handed to it and not yet through it:
bronze(+silver) = sent - read by its query; each gold query = read by silver - read by it. A record counts as
read when the micro-batch that read it ends (its progress event's start plus its duration), so the backlog is
known exactly at every moment of the window, not only at samples. A backlog is a sawtooth (it climbs while a
micro-batch runs and drops when one ends), so a rate is sustained when no stage's backlog *troughs* grow: the
lowest backlog of the window's last 20 s may exceed the lowest of its first 20 s by 5% of the records sent in
between, plus, for a stage fed by another query, one of that query's micro-batches of the last 20 s. The allowance of one
upstream micro-batch is the grid, not a deficit: every query's trigger fires on the same 5 s grid, so a gold
micro-batch that now ends just after silver's next commit instead of just before it stays one silver
micro-batch behind for good, while keeping up (before session 24 the troughs were sampled every 2 s and had no
such allowance: rates down to 313/s failed by one or two silver micro-batches, and E1 ranged from 625/s to
10,000/s for like code). The warm-up lasts 30 s so that the slowest stage's sawtooth has settled (startup
batches are small, so an earlier trough is too low). Backlogs are still sampled every 2 s, for the
least-squares slope reported beside the growth (for reading only). From a start rate, rates double while
sustained (or halve while not) until a sustained and an unsustained rate bracket the answer, then two
bisection steps narrow it to a quarter (one step, a half, before session 24); the pipeline drains between
trials. The figure is the highest sustained rate against the goal of 20,000 events/s.

Each trial reports the seconds the driver JVM's JIT compilers spent during it (`jit_s`, since session 26): on 2
cores HotSpot's compiler takes 50-60% of the driver's CPU in the pipeline's first 4 minutes and still 15-25% by
the eighth, so a reader sees how much of the machine each verdict had. (Five minutes at the start rate before the
first trial, tried in session 26, left the compiler at 20-38 s per trial and E1 at 4,375/s: not kept.)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.bench.common import DriverMemory, Figure, Topics, payloads
from pipelines.bench.latency import PacedSender, pipeline_settings, progress_ms, wait_for
from pipelines.bench.stages import start_minimal_pipeline
from pipelines.engine import runner
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import load_project

SAMPLE_SECONDS = 2
MAX_GROWTH = 0.05  # trough-to-trough backlog growth, as a fraction of the records sent meanwhile, still flat
# (plus one upstream micro-batch for a stage fed by another query)
TROUGH_SECONDS = 20  # each end of the window whose lowest backlog is compared (several trigger intervals)
WINDOW_SECONDS = 60
WARMUP_SECONDS = 30
START_RATE = 2_500
MIN_RATE = 300
MAX_RATE = 80_000
BISECTIONS = 2  # a bracket of 5,000-10,000/s ends 1,250/s wide
DRAIN_SECONDS = 180  # a backlog left after that shows in the next trial's slopes


Batches = list[tuple[float, int]]  # (end time, epoch seconds; rows read) of each micro-batch of a query


def jit_seconds(spark) -> float:  # noqa: ANN001
    """Seconds the driver JVM's JIT compilers have spent so far (HotSpot's own count)."""
    return spark._jvm.java.lang.management.ManagementFactory.getCompilationMXBean().getTotalCompilationTime() / 1000  # noqa: SLF001


def _input_rows(q) -> int:  # noqa: ANN001
    return sum(p.numInputRows for p in q.recentProgress)


def batch_ends(q) -> Batches:  # noqa: ANN001
    """When each micro-batch of `q` ended, and the rows it read, in order of ending."""
    return sorted((progress_ms(p.timestamp) / 1000 + p.durationMs.get("triggerExecution", 0) / 1000, p.numInputRows)
                  for p in q.recentProgress)  # fmt: skip


def read_by(batches: Batches, t: float) -> int:
    """Rows read by the micro-batches ended at `t` (pure)."""
    return sum(n for end, n in batches if end <= t)


def lowest_backlog(arrived: Callable[[float], float], batches: Batches, start: float, end: float) -> float:
    """The lowest backlog (`arrived(t)` - rows read by `batches` at t) over [start, end] (pure). Arrivals only raise
    it, so it is lowest at `start` or as one of the stage's own micro-batches ends."""
    times = [start, *[e for e, _ in batches if start < e <= end]]
    return min(arrived(t) - read_by(batches, t) for t in times)


def sent_by(samples: list[tuple[float, int]]) -> Callable[[float], float]:
    """Records sent at time t, between (time, records sent) samples of a paced sender (pure)."""

    def at(t: float) -> float:
        if t <= samples[0][0]:
            return samples[0][1]
        for (t0, n0), (t1, n1) in zip(samples, samples[1:]):
            if t <= t1:
                return n0 + (n1 - n0) * (t - t0) / (t1 - t0) if t1 > t0 else n1
        return samples[-1][1]

    return at


def trough_growth(arrived: Callable[[float], float], batches: Batches, start: float, end: float, span: float) -> float:
    """Lowest backlog of the last `span` s of [start, end] - lowest of its first `span` s (pure)."""
    return lowest_backlog(arrived, batches, end - span, end) - lowest_backlog(arrived, batches, start, start + span)


def sampled_trough_growth(points: list[tuple[float, float]], span: float) -> tuple[float, float]:
    """The criterion before session 24, for comparison: (lowest sampled y of the last `span` s - lowest of the first
    `span` s, seconds between the two spans) (pure)."""
    first, last = points[0][0], points[-1][0]
    head = min(y for t, y in points if t <= first + span)
    tail = min(y for t, y in points if t >= last - span)
    return tail - head, max(last - first - span, 0.0)


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y) points (pure)."""
    n = len(points)
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if var == 0 else sum((t - mt) * (y - my) for t, y in points) / var


def stages(batches: dict[str, Batches], sent: Callable[[float], float]) -> dict[str, tuple[Callable, Batches, Batches]]:
    """Each stage of the pipeline: (its arrivals at time t, its own micro-batches, its upstream query's micro-batches,
    empty for the first stage) (pure). `batches` by query name; `sent` is the records sent to the topic by time t."""
    first = "clickstream.bronze" if "clickstream.bronze" in batches else "clickstream.silver"
    out = {"bronze" if first == "clickstream.bronze" else "bronze+silver": (sent, batches[first], [])}
    if first == "clickstream.bronze":
        out["silver"] = (lambda t: read_by(batches[first], t), batches["clickstream.silver"], batches[first])
    silver = batches["clickstream.silver"]
    for name, own in batches.items():
        if ".gold." in name:
            out[name.split(".gold.")[1]] = (lambda t: read_by(silver, t), own, silver)
    return out


def judge(stage: tuple[Callable, Batches, Batches], rate: float, start: float, end: float, span: float) -> dict:
    """Whether a stage kept up over [start, end]: its troughs grew by at most 5% of the records sent between the
    two spans plus its upstream's largest micro-batch of the last span (one step of the trigger grid: a micro-batch
    that ends just after an upstream commit instead of just before it) (pure)."""
    arrived, own, upstream = stage
    grew = trough_growth(arrived, own, start, end, span)
    step = max([n for e, n in upstream if end - span <= e <= end], default=0)
    allowed = MAX_GROWTH * rate * max(end - start - span, 0.0) + step
    return {"growth": int(grew), "allowed": int(allowed), "kept_up": grew <= allowed}


class Trial:
    """One rate: send, then judge each stage's backlog over the window from its micro-batches' ends."""

    def __init__(self, settings: Settings, topic: str, queries: dict, start_index: int) -> None:
        self.settings, self.topic, self.queries, self.start_index = settings, topic, queries, start_index

    def backlogs(self, sent_now: int) -> dict[str, int]:
        """Backlog per stage once `sent_now` records of this trial are sent (from the queries' progress so far)."""
        read = {name: _input_rows(q) for name, q in self.queries.items()}
        sent = self.start_index + sent_now
        if "clickstream.bronze" in read:
            out = {"bronze": sent - read["clickstream.bronze"],
                   "silver": read["clickstream.bronze"] - read["clickstream.silver"]}  # fmt: skip
        else:  # one query writes bronze and silver
            out = {"bronze+silver": sent - read["clickstream.silver"]}
        for name, n in read.items():
            if ".gold." in name:
                out[name.split(".gold.")[1]] = read["clickstream.silver"] - n
        return out

    def run(self, rate: float, window: float, warmup: float) -> dict:
        n = int(rate * (warmup + window))
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.start_index / 1000)
        values = payloads(n, seed=self.start_index + 1, event_times=(start, 1000))
        values = [v.replace(b'"bench-', f'"e1-{self.start_index}-'.encode(), 1) for v in values]
        sender = PacedSender(self.settings.kafka, self.topic, values, rate)
        samples: dict[str, list[tuple[float, float]]] = {}
        sent = [(time.time(), self.start_index)]
        sender.start()
        t0 = time.monotonic()
        while sender.is_alive():
            elapsed, now, sent_now = time.monotonic() - t0, time.time(), sender.sent
            sent.append((now, self.start_index + sent_now))
            if elapsed >= warmup:
                for stage, backlog in self.backlogs(sent_now).items():
                    samples.setdefault(stage, []).append((elapsed, backlog))
            time.sleep(SAMPLE_SECONDS)
        sender.join()
        if sender.error:
            raise LakepipeError(f"paced producer failed: {sender.error}")
        sent.append((sender.ended, self.start_index + len(values)))
        time.sleep(SAMPLE_SECONDS)  # the progress of a micro-batch that ended in the window reaches the driver
        achieved = len(values) / (sender.ended - sender.started)
        begin, end = sender.started + warmup, sender.ended
        span = min(TROUGH_SECONDS, window / 3)
        batches = {name: batch_ends(q) for name, q in self.queries.items()}
        verdicts = {s: judge(stage, rate, begin, end, span) for s, stage in stages(batches, sent_by(sent)).items()}
        slopes = {stage: round(slope(points), 1) for stage, points in samples.items() if len(points) >= 3}
        sampled = {stage: sampled_trough_growth(points, span) for stage, points in samples.items() if len(points) >= 3}
        return {"rate": round(achieved), "sent": n, "slopes": slopes,
                "sustained": all(v["kept_up"] for v in verdicts.values()),
                "trough_growth": {s: v["growth"] for s, v in verdicts.items()},
                "allowed_growth": {s: v["allowed"] for s, v in verdicts.items()},
                "sampled_sustained": all(g <= MAX_GROWTH * rate * sec for g, sec in sampled.values()),
                "sampled_trough_growth": {s: int(g) for s, (g, _) in sampled.items()},
                "backlog_end": {s: int(p[-1][1]) for s, p in samples.items()}}  # fmt: skip


def bench_sustained(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool, minimal: bool = False) -> Figure:  # noqa: ANN001
    """E1: from START_RATE, double or halve to a sustained/unsustained bracket, then BISECTIONS steps. With `minimal`
    (E1m), the same for the minimal typed silver job reading Kafka in place of our bronze and silver, with our gold
    queries on its table."""
    window, warmup = (20, 5) if quick else (WINDOW_SECONDS, WARMUP_SECONDS)
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "100000")  # backlogs sum every batch's input
    topic = topics.new("e1m" if minimal else "e1")
    trigger = settings.streaming.trigger_interval  # as `lakepipe run` runs it
    if minimal:
        queries = start_minimal_pipeline(spark, settings.kafka, topic, scratch / "e1m", {"processingTime": trigger})
    else:
        env = pipeline_settings(settings, scratch / "e1", topic, trigger)
        queries = runner.start_all(spark, load_project(env, ["clickstream"]), ["clickstream"], {"processingTime": trigger})
    by_name = {q.name: q for q in queries}
    memory = DriverMemory(spark)
    trials, sent = [], 0
    try:
        with memory.sampled():

            def trial(rate: float) -> dict:
                nonlocal sent
                jit = jit_seconds(spark)
                result = Trial(settings, topic, by_name, sent).run(rate, window, warmup)
                result["jit_s"] = round(jit_seconds(spark) - jit, 1)
                sent += result["sent"]
                for q in queries:
                    runner.raise_if_failed(q, queries)
                caught_up = wait_for(lambda: all(v <= 0 for v in Trial(settings, topic, by_name, sent).backlogs(0)
                                             .values()), DRAIN_SECONDS)  # fmt: skip
                trials.append(result | {"target_rate": rate, "drained": caught_up})
                return result

            good, bad, rate = 0.0, None, START_RATE
            while MIN_RATE <= rate <= MAX_RATE:  # double while sustained, halve while not: a bracket
                r = trial(rate)
                if r["sustained"]:
                    good = max(good, r["rate"])
                    if bad is not None:
                        break
                    rate *= 2
                else:
                    bad = rate
                    if good:
                        break
                    rate /= 2
            for _ in range(0 if quick else BISECTIONS):
                if not (good and bad):
                    break
                mid = (good + bad) / 2
                r = trial(mid)
                good, bad = (max(good, r["rate"]), bad) if r["sustained"] else (good, mid)
    finally:
        for q in queries:
            if q.isActive:
                q.stop()
    if minimal:
        return Figure("E1m", f"highest rate the minimal typed silver job (from Kafka) with our 3 gold queries on its "
                      f"table sustains (trigger {trigger}; no backlog growing over {window} s) / E1's goal", good, 20_000,
                      unit="events/s", peak_rss_mb=memory.peak_mb, details={"trials": trials, "window_s": window})  # fmt: skip
    return Figure("E1", f"highest rate the whole clickstream pipeline sustains (bronze, silver with its suite, 3 gold "
                  f"queries, trigger {trigger}; no backlog growing over {window} s) / the goal", good, 20_000, unit="events/s",
                  peak_rss_mb=memory.peak_mb, target=1.0, details={"trials": trials, "window_s": window})  # fmt: skip

