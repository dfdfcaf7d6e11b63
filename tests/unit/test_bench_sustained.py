"""E1's criterion: a stage keeps up when the troughs of its backlog stay level, measured exactly at the ends of its
micro-batches; a stage fed by another query may end one of that query's micro-batches later than at the start."""

from __future__ import annotations

from pipelines.bench.common import Figure
from pipelines.bench.report import report
from pipelines.bench.sustained import (
    jit_seconds,
    judge,
    lowest_backlog,
    read_by,
    sampled_trough_growth,
    sent_by,
    slope,
    stages,
)


def paced(rate: float, start: float, end: float) -> list[tuple[float, int]]:
    return [(start, 0), (end, int(rate * (end - start)))]


def batches_every(period: float, duration: float, rate: float, end: float, slower_by: float = 0.0) -> list:
    """A first stage's micro-batches on a `period` grid, each taking `duration` (+ `slower_by` s per batch more than the
    last) and reading what was sent up to its start."""
    out, start, took, done = [], 0.0, duration, 0
    while start + took <= end:
        out.append((start + took, int(rate * start) - done))
        done = int(rate * start)
        start = max(start + period, start + took)
        took += slower_by
    return out


def test_a_stage_whose_micro_batches_keep_their_length_kept_up():
    sent = sent_by(paced(1000, 0, 90))
    own = batches_every(5, 3, 1000, 90)
    verdict = judge((sent, own, []), 1000, 30, 90, 20)
    assert verdict["kept_up"]
    assert verdict["growth"] == 0  # 3 s of records behind just after every micro-batch, from start to end


def test_a_stage_whose_micro_batches_grow_fell_behind():
    sent = sent_by(paced(1000, 0, 90))
    own = batches_every(5, 3, 1000, 90, slower_by=0.4)  # back to back after a few batches, each longer than the last
    verdict = judge((sent, own, []), 1000, 30, 90, 20)
    assert not verdict["kept_up"]
    assert verdict["growth"] > verdict["allowed"] == 0.05 * 1000 * 40


def test_the_lowest_backlog_is_found_at_a_micro_batch_end_between_samples():
    sent = sent_by(paced(1000, 0, 60))
    own = [(10.0, 0), (13.3, 9_000), (20.0, 1_000)]  # 13.3: a moment a 2 s sampler (at 12, 14) misses
    assert lowest_backlog(sent, own, 11, 19) == 13_300 - 9_000
    assert read_by(own, 13.3) == 9_000 and read_by(own, 13.2) == 0


def test_a_gold_stage_one_silver_micro_batch_later_at_the_end_kept_up_and_one_reading_half_did_not():
    silver = [(t + 3.0, 5_000) for t in range(0, 90, 5)]  # a silver commit 3 s into every 5 s slot
    gold_early = [(t + 2.5, 5_000) for t in range(5, 60, 5)]  # ends before silver's next commit
    gold_late = [(t + 3.5, 5_000) for t in range(60, 90, 5)]  # now ends just after it: one silver batch behind
    arrivals, _, _ = stages({"clickstream.silver": silver, "clickstream.gold.g": gold_early + gold_late},
                            sent_by([(0, 0)]))["g"]  # fmt: skip
    verdict = judge((arrivals, gold_early + gold_late, silver), 1000, 30, 90, 20)
    assert verdict["growth"] == 5_000
    assert verdict["kept_up"]  # one step of the grid, not a deficit
    gold_behind = gold_early + [(t + 3.5, 2_500) for t in range(60, 90, 5)]  # reads half of what arrives
    verdict = judge((arrivals, gold_behind, silver), 1000, 30, 90, 20)
    assert not verdict["kept_up"]


def test_stages_with_bronze_and_silver_in_one_query_or_two():
    sent = sent_by(paced(100, 0, 10))
    one = stages({"clickstream.silver": [], "clickstream.gold.a": []}, sent)
    assert list(one) == ["bronze+silver", "a"]
    two = stages({"clickstream.bronze": [(4.0, 300)], "clickstream.silver": [], "clickstream.gold.a": []}, sent)
    assert list(two) == ["bronze", "silver", "a"]
    assert two["silver"][0](5.0) == 300 and two["silver"][2] == [(4.0, 300)]


def sawtooth(period: int, peak: int, drift_per_s: float, seconds: int = 60) -> list[tuple[float, float]]:
    """Backlog sampled every 2 s: climbs to `peak` over each period, drops to the trough, trough drifts."""
    return [(float(t), (t % period) / period * peak + drift_per_s * t) for t in range(0, seconds + 1, 2)]


def test_the_sampled_criterion_kept_for_comparison_sees_level_and_rising_troughs():
    points = sawtooth(period=16, peak=3000, drift_per_s=0)
    assert sampled_trough_growth(points, 20) == (0, 40)
    assert abs(slope(points)) > 0  # what the first criterion tripped on
    assert sampled_trough_growth(sawtooth(period=10, peak=3000, drift_per_s=50), 20) == (50 * 40, 40)


def test_the_allowance_is_one_upstream_micro_batch_of_the_last_span_not_a_catch_up_batch_before_it():
    silver = [(33.0, 100_000)] + [(t + 3.0, 5_000) for t in range(35, 90, 5)]  # silver catching up early in the window
    gold = [(t + 2.5, 5_000) for t in range(35, 90, 5)]
    verdict = judge((lambda t: read_by(silver, t), gold, silver), 1000, 30, 90, 20)
    assert verdict["allowed"] == 0.05 * 1000 * 40 + 5_000


def test_the_jit_compile_seconds_come_from_the_driver_jvm_and_grow_as_it_compiles(spark):
    before = jit_seconds(spark)
    spark.range(200_000).selectExpr("id % 7 AS k", "id * 3 AS v").groupBy("k").sum("v").collect()
    after = jit_seconds(spark)
    assert before > 0  # a JVM that has run Spark has compiled code already
    assert after >= before


def test_the_report_says_what_each_trial_spent_compiling(tmp_path):
    trial = {"rate": 5_000, "sustained": True, "slopes": {}, "trough_growth": {"bronze+silver": -120},
             "allowed_growth": {"bronze+silver": 9_999}, "jit_s": 3.4}  # fmt: skip
    figure = Figure("E1", "sustained", 5_000, 20_000, unit="events/s",
                    details={"trials": [trial]})
    info = {"when": "2026-12-03T00:00:00", "cores": 2, "memory_gb": 23.5, "java": "openjdk 17", "pyspark": "4.2.0"}
    text = report([figure], info, "make bench ONLY=E1", tmp_path, 3)
    assert "- 5,000/s: sustained; bronze+silver -120 / 9,999; JIT compile 3.4 s" in text
