"""Gold backfills: a wrong range recomputed from silver, beside a running stream, a new output complete from its first run (helpers in test_backfill.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.errors import LakepipeError
from tests.integration.test_backfill import START, backfill, beside_the_stream
from tests.integration.test_clickstream_once import expected_revenue, gold_revenue
from tests.support import pipeline, reaching_silver, run_once, send, table

pytestmark = pytest.mark.kafka


def test_a_wrong_gold_range_is_recomputed_from_silver(spark, test_settings):
    gen = ClickstreamGenerator(seed=11, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.04))
    wave1 = [gen.next_event() for _ in range(1200)]
    send(test_settings, wave1)
    late = ClickstreamGenerator(seed=12, start=gen.clock, events_per_second=1, faults=FaultRates(late=0.3))
    wave2 = [late.next_event() for _ in range(600)]
    run_once(spark, test_settings, ["clickstream"])
    send(test_settings, wave2)
    run_once(spark, test_settings, ["clickstream"])  # late events reach silver, not gold
    p = pipeline(test_settings, "clickstream")
    path = p.layout.output("clickstream_revenue_per_minute").path
    payloads = reaching_silver(wave1 + wave2)
    full = expected_revenue(payloads)
    assert gold_revenue(spark, p) != full, "the stream left late events out of gold"

    start, end = dt.datetime(2026, 11, 22, 8, 0), dt.datetime(2026, 11, 22, 9, 3)  # final: the stream is at ~09:04
    spark.sql(f"UPDATE delta.`{path}` SET revenue = 0 WHERE window_start >= '2026-11-22 09:01:00' AND window_start < '2026-11-22 09:02:00'")
    spark.sql(f"DELETE FROM delta.`{path}` WHERE window_start = '2026-11-22 09:02:00' AND category = 'books'")
    before = gold_revenue(spark, p)

    dry = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat(), dry_run=True)
    assert dry.status == "dry run" and gold_revenue(spark, p) == before
    done = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
    assert done.status == "succeeded" and done.rows_replaced > 0
    after = gold_revenue(spark, p)
    in_range = lambda rows: {k: v for k, v in rows.items() if start <= k[0] < end}  # noqa: E731
    assert in_range(after) == in_range(full), "the range equals a recomputation from all of silver (late events too)"
    assert in_range(before) != in_range(full) and any(k[0] < dt.datetime(2026, 11, 22, 9) for k in in_range(after))
    assert {k: v for k, v in after.items() if k not in in_range(after)} == {k: v for k, v in before.items() if not start <= k[0] < end}

    version = spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().version
    again = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
    assert again.status == "skipped" and spark.sql(f"DESCRIBE HISTORY delta.`{path}` LIMIT 1").first().version == version

    with pytest.raises(LakepipeError, match="keeps streaming state"):
        backfill(spark, test_settings, table="clickstream_sessions", start=start.isoformat(), end=end.isoformat())


def test_a_gold_backfill_beside_the_running_stream(spark, test_settings):
    """The pipeline runs continuously while events arrive; two gold backfills run meanwhile. Once both are done
    (the stream drained by a last --once run), gold equals the independent computation, each key once."""
    gen = ClickstreamGenerator(seed=31, start=START, events_per_second=2)
    events = [gen.next_event() for _ in range(1500)]
    send(test_settings, events[:300])

    def backfills() -> None:
        for start, end in [(START, START.replace(minute=4)), (START.replace(minute=2), START.replace(minute=8))]:
            done = backfill(spark, test_settings, table="clickstream_revenue_per_minute", start=start.isoformat(), end=end.isoformat())
            assert done.status == "succeeded"

    beside_the_stream(spark, test_settings, events[300:], backfills)
    p = pipeline(test_settings, "clickstream")
    gold = table(spark, p, "clickstream_revenue_per_minute")
    assert gold.count() == gold.select("window_start", "category", "currency").distinct().count()
    assert gold_revenue(spark, p) == expected_revenue(reaching_silver(events))


def test_a_new_output_is_complete_from_its_first_run(spark, test_settings, tmp_path):
    """Situation 2: an output added to the spec later holds all of silver's history after its first run."""
    import shutil

    import yaml

    from pipelines.model.config import load_settings
    from tests.conftest import PROJECT_DIR, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    specs = tmp_path / "specs"
    shutil.copytree(PROJECT_DIR / "conf" / "pipelines", specs)
    full = (specs / "clickstream.yaml").read_text()
    spec = yaml.safe_load(full)
    spec["outputs"] = [o for o in spec["outputs"] if o["name"] != "clickstream_activity_per_minute"]
    (specs / "clickstream.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    topic = pipeline(test_settings, "clickstream").topic
    before = load_settings("test", write_conf(tmp_path / "conf", topic, specs=specs))

    gen = ClickstreamGenerator(seed=61, start=START, events_per_second=5)
    events = [gen.next_event() for _ in range(800)]
    send(before, events[:500])
    run_once(spark, before, ["clickstream"])
    send(before, events[500:])
    run_once(spark, before, ["clickstream"])
    (specs / "clickstream.yaml").write_text(full)  # the output is added
    after = load_settings("test", write_conf(tmp_path / "conf", topic, specs=specs))
    run_once(spark, after, ["clickstream"])
    assert gold_activity(spark, pipeline(after, "clickstream")) == expected_activity(reaching_silver(events))
