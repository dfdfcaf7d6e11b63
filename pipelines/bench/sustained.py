"""E1: the highest producer rate the whole clickstream pipeline sustains on this machine.

The pipeline (bronze, silver with its suite, the three gold queries) runs continuously in one application,
with the environment's trigger interval, as `lakepipe run` runs it (5 s locally: each query takes what arrived
since its last micro-batch, so fixed per-batch costs do not multiply). Trials send at a fixed rate for a warm-up then a measured window; every 2 s the
backlog of each stage is sampled, in records: bronze = sent - read by bronze; silver = read by bronze - read
by silver; each gold query = read by silver - read by it. A stage's backlog is a sawtooth (it climbs while a
micro-batch runs and drops when the next one reads), so a rate is sustained when no stage's backlog *troughs*
grow: the lowest backlog of the window's last 20 s exceeds the lowest of its first 20 s by less than 5% of the
records sent in between. The warm-up lasts 30 s so that the slowest stage's sawtooth has settled (startup
batches are small, so an earlier trough is too low). The least-squares slope is reported beside the growth,
for reading only. From a start
rate, rates double while sustained (or halve while not) until a sustained and an unsustained rate bracket
the answer, then one bisection step refines it; the pipeline drains between trials. The figure is the highest sustained rate against the goal of 20,000 events/s.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from pipelines.bench.common import DriverMemory, Figure, Topics, payloads
from pipelines.bench.latency import PacedSender, pipeline_settings, wait_for
from pipelines.engine import runner
from pipelines.errors import LakepipeError
from pipelines.model.config import Settings
from pipelines.model.project import load_project

SAMPLE_SECONDS = 2
MAX_GROWTH = 0.05  # trough-to-trough backlog growth, as a fraction of the records sent meanwhile, still flat
TROUGH_SECONDS = 20  # each end of the window whose lowest backlog is compared (several trigger intervals)
WINDOW_SECONDS = 60
WARMUP_SECONDS = 30
START_RATE = 2_500
MIN_RATE = 300
MAX_RATE = 80_000
BISECTIONS = 1
DRAIN_SECONDS = 180  # a backlog left after that shows in the next trial's slopes


def _input_rows(q) -> int:  # noqa: ANN001
    return sum(p.numInputRows for p in q.recentProgress)


def trough_growth(points: list[tuple[float, float]], span: float) -> tuple[float, float]:
    """(lowest y of the last `span` s - lowest y of the first `span` s, seconds between the two spans) (pure)."""
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


class Trial:
    """One rate: send, sample the backlogs during the window, report the slopes."""

    def __init__(self, settings: Settings, topic: str, queries: dict, start_index: int) -> None:
        self.settings, self.topic, self.queries, self.start_index = settings, topic, queries, start_index

    def backlogs(self, sent_now: int) -> dict[str, int]:
        """Backlog per stage once `sent_now` records of this trial are sent."""
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
        sender.start()
        samples: dict[str, list[tuple[float, float]]] = {}
        t0 = time.monotonic()
        while sender.is_alive():
            elapsed = time.monotonic() - t0
            if elapsed >= warmup:
                for stage, backlog in self.backlogs(sender.sent).items():
                    samples.setdefault(stage, []).append((elapsed, backlog))
            time.sleep(SAMPLE_SECONDS)
        sender.join()
        if sender.error:
            raise LakepipeError(f"paced producer failed: {sender.error}")
        achieved = len(values) / (sender.ended - sender.started)
        slopes = {stage: round(slope(points), 1) for stage, points in samples.items() if len(points) >= 3}
        span = min(TROUGH_SECONDS, window / 3)
        growth = {stage: trough_growth(points, span) for stage, points in samples.items() if len(points) >= 3}
        sustained = all(grew <= MAX_GROWTH * rate * seconds for grew, seconds in growth.values())
        return {"rate": round(achieved), "sent": n, "slopes": slopes, "sustained": sustained,
                "trough_growth": {stage: int(grew) for stage, (grew, _) in growth.items()},
                "backlog_end": {s: int(p[-1][1]) for s, p in samples.items()}}  # fmt: skip


def bench_sustained(spark, settings: Settings, topics: Topics, scratch: Path, quick: bool) -> Figure:  # noqa: ANN001
    """E1: from START_RATE, double or halve to a sustained/unsustained bracket, then BISECTIONS steps."""
    window, warmup = (20, 5) if quick else (WINDOW_SECONDS, WARMUP_SECONDS)
    spark.conf.set("spark.sql.streaming.numRecentProgressUpdates", "100000")  # backlogs sum every batch's input
    topic = topics.new("e1")
    trigger = settings.streaming.trigger_interval  # as `lakepipe run` runs it
    env = pipeline_settings(settings, scratch / "e1", topic, trigger)
    queries = runner.start_all(spark, load_project(env, ["clickstream"]), ["clickstream"], {"processingTime": trigger})
    by_name = {q.name: q for q in queries}
    memory = DriverMemory(spark)
    trials, sent = [], 0
    try:
        with memory.sampled():

            def trial(rate: float) -> dict:
                nonlocal sent
                result = Trial(settings, topic, by_name, sent).run(rate, window, warmup)
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
    return Figure("E1", f"highest rate the whole clickstream pipeline sustains (bronze, silver with its suite, 3 gold "
                  f"queries, trigger {trigger}; no backlog growing over {window} s) / the goal", good, 20_000, unit="events/s",
                  peak_rss_mb=memory.peak_mb, target=1.0, details={"trials": trials, "window_s": window})  # fmt: skip

