"""Silver backfills: re-derived from bronze after a contract fix, killed half-way and run again, beside the running stream (helpers in test_backfill.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from tests.integration.test_backfill import START, backfill, beside_the_stream, killed_then_finished
from tests.integration.test_clickstream_once import expected_revenue, gold_revenue
from tests.support import pipeline, reaching_silver, run_once, send, table

pytestmark = pytest.mark.kafka


def test_silver_re_derived_from_bronze_after_a_contract_fix(spark, test_settings, tmp_path):
    """`refund` events were quarantined (not in the contract's set); the contract is fixed to accept them and the
    range re-derived: they reach silver once each, leave quarantine, and the activity table counts them."""
    import json
    import shutil

    from pipelines.model.config import load_settings
    from tests.conftest import CONTRACTS, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    gen = ClickstreamGenerator(seed=21, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.04, malformed=0.1))
    events = [gen.next_event() for _ in range(1200)]
    send(test_settings, events)
    run_once(spark, test_settings, ["clickstream"])
    later = ClickstreamGenerator(seed=22, start=gen.clock, events_per_second=1)  # moves the watermark past wave 1
    events += [later.next_event() for _ in range(700)]
    send(test_settings, events[1200:])
    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    refunds = [json.loads(e.value) for e in events if e.reasons == ("not_in_set:event_type",)]
    assert refunds and table(spark, p, "clickstream_events").where("event_type = 'refund'").count() == 0

    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    contract = schemas / "clickstream" / "contract.yaml"
    contract.write_text(contract.read_text().replace("checkout, purchase]", "checkout, purchase, refund]", 1))
    topic = p.topic
    fixed = load_settings("test", write_conf(tmp_path / "conf", topic, schemas=schemas))
    assert fixed.lake_root == test_settings.lake_root

    done = backfill(spark, fixed, layer="silver", start="2000-01-01", end="2100-01-01")
    assert done.status == "succeeded" and "refreshed" in done.detail and "clickstream_sessions (keeps streaming state)" in done.detail
    p = pipeline(fixed, "clickstream")
    silver = table(spark, p, "clickstream_events")
    accepted = reaching_silver(events) + refunds
    assert silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert silver.where("event_type = 'refund'").count() == len(refunds)
    reasons = {r for row in table(spark, p, "clickstream_events_quarantine").collect() for r in row.reasons}
    assert "not_in_set:event_type" not in reasons and reasons
    assert gold_activity(spark, p) == expected_activity(accepted)
    assert gold_revenue(spark, p) == expected_revenue(accepted)
    run_once(spark, fixed, ["clickstream"])  # the streams carry on past the backfill's commits (and skip them)
    assert gold_activity(spark, p) == expected_activity(accepted) and silver.count() == len(accepted)


@pytest.mark.scenario  # SIGKILL scenarios (a JVM of their own each): make test-scenarios
def test_gold_and_silver_backfills_killed_half_way_then_run_again_are_exact(spark, test_settings, tmp_path):
    import json
    import shutil
    from pathlib import Path

    from pipelines.model.config import load_settings
    from tests.conftest import CONTRACTS, write_conf
    from tests.integration.test_clickstream_once import expected_activity, gold_activity

    gen = ClickstreamGenerator(seed=41, start=START, events_per_second=5, faults=FaultRates(malformed=0.1))
    events = [gen.next_event() for _ in range(1000)]
    later = ClickstreamGenerator(seed=42, start=gen.clock + dt.timedelta(minutes=15), events_per_second=5)
    events += [later.next_event() for _ in range(100)]  # moves the watermark past the first 1,000
    send(test_settings, events)
    run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    revenue = Path(p.layout.output("clickstream_revenue_per_minute").path)
    spark.sql(f"UPDATE delta.`{revenue}` SET revenue = 0")
    window = ["--table", "clickstream_revenue_per_minute", "--from", "2026-11-22T08:00", "--to", "2026-11-22T09:10"]
    killed_then_finished(spark, test_settings, ["--layer", "gold", *window], revenue,
                         table="clickstream_revenue_per_minute", start="2026-11-22T08:00", end="2026-11-22T09:10")  # fmt: skip
    accepted = reaching_silver(events)
    closed = lambda rows: {k: v for k, v in rows.items() if k[0] < dt.datetime(2026, 11, 22, 9, 10)}  # noqa: E731
    assert closed(gold_revenue(spark, p)) == closed(expected_revenue(accepted))

    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    contract = schemas / "clickstream" / "contract.yaml"
    contract.write_text(contract.read_text().replace("checkout, purchase]", "checkout, purchase, refund]", 1))
    fixed = load_settings("test", write_conf(tmp_path / "conf", p.topic, schemas=schemas))
    killed_then_finished(spark, fixed, ["--layer", "silver", "--from", "2000-01-01", "--to", "2100-01-01"],
                         Path(p.layout.silver.path), layer="silver", start="2000-01-01", end="2100-01-01")  # fmt: skip
    refunds = [json.loads(e.value) for e in events if e.reasons == ("not_in_set:event_type",)]
    accepted += refunds
    silver = table(spark, p, "clickstream_events")
    assert refunds and silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert closed(gold_activity(spark, p)) == closed(expected_activity(accepted))
    again = backfill(spark, fixed, layer="silver", start="2000-01-01", end="2100-01-01")
    assert again.status == "skipped" and table(spark, p, "clickstream_events").count() == len(accepted)


def test_a_silver_backfill_beside_the_running_stream_keeps_every_row_once(spark, test_settings):
    gen = ClickstreamGenerator(seed=71, start=START, events_per_second=5, faults=FaultRates(exact_duplicate=0.03, malformed=0.05))
    events = [gen.next_event() for _ in range(1500)]
    send(test_settings, events[:500])

    def backfills() -> None:
        for _ in range(2):
            done = backfill(spark, test_settings, layer="silver", start="2000-01-01", end="2100-01-01", force=True)
            assert done.status == "succeeded", done.summary()

    beside_the_stream(spark, test_settings, events[500:], backfills)
    p = pipeline(test_settings, "clickstream")
    silver = table(spark, p, "clickstream_events")
    accepted = reaching_silver(events)
    assert silver.count() == silver.select("event_id").distinct().count() == len(accepted)
    assert table(spark, p, "clickstream_events_quarantine").count() == sum(1 for e in events if e.reasons)


def test_a_silver_append_refused_for_a_backfill_commit_goes_again_only_while_its_keys_are_still_new(spark, test_settings):
    from pipelines.engine.silver import SilverBatchWriter, silver_schema
    from pipelines.engine.tables import create_tables
    from pipelines.model.project import load_project

    p = pipeline(test_settings, "clickstream")
    create_tables(spark, load_project(test_settings, ["clickstream"]), p)
    writer = SilverBatchWriter(p.contract, p.spec, p.layout, p.layout.checkpoint("silver"))
    schema = silver_schema(p.contract)
    day = dt.date(2026, 11, 22)

    def rows(*ids: str):  # noqa: ANN202
        at = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
        return spark.createDataFrame([{"event_id": i, "event_time": at, "event_date": day} for i in ids], schema)

    rows("e1", "e2").write.format("delta").mode("append").save(p.layout.silver.path)  # what a backfill committed
    assert not writer._keys_taken_meanwhile(rows("e3", "e4"))  # noqa: SLF001 - still first copies: append again
    assert writer._keys_taken_meanwhile(rows("e3", "e2"))  # noqa: SLF001 - e2 is in silver now: the batch must re-run


def test_a_silver_batch_is_not_appended_over_keys_a_backfill_committed_after_its_lookup(spark, test_settings):
    """The lookup reads silver's files as Parquet, so Delta does not know what a batch read: the batch checks the
    commits made since by other writers itself."""
    from pipelines.engine.delta_io import BatchAppender, committed_by_others, table_version
    from pipelines.engine.silver import SilverBatchWriter, silver_schema
    from pipelines.engine.tables import create_tables
    from pipelines.errors import ConcurrentSilverWriteError
    from pipelines.model.project import load_project

    p = pipeline(test_settings, "clickstream")
    create_tables(spark, load_project(test_settings, ["clickstream"]), p)
    path = p.layout.silver.path
    writer = SilverBatchWriter(p.contract, p.spec, p.layout, p.layout.checkpoint("silver"))
    writer._appender = BatchAppender(spark, p.layout.checkpoint("silver"))  # noqa: SLF001 - as its first batch sets it
    schema = silver_schema(p.contract)
    day = dt.date(2026, 11, 22)

    def rows(*ids: str):  # noqa: ANN202
        at = dt.datetime(2026, 11, 22, 9, tzinfo=dt.UTC)
        return spark.createDataFrame([{"event_id": i, "event_time": at, "event_date": day} for i in ids], schema)

    def ids() -> set[str]:
        return {r.event_id for r in spark.read.format("delta").load(path).collect()}

    read_at = table_version(spark, path)  # what the batches' lookups read
    rows("e1", "e2").write.format("delta").mode("append").save(path)  # what a backfill committed since
    with pytest.raises(ConcurrentSilverWriteError, match="classify the batch again"):
        writer._append_silver(rows("e3", "e2"), "silver-q", 0, {}, read_at)  # noqa: SLF001
    assert ids() == {"e1", "e2"}, "nothing of that batch appended"
    writer._append_silver(rows("e3", "e4"), "silver-q", 1, {}, read_at)  # noqa: SLF001 - its keys are still new
    assert ids() == {"e1", "e2", "e3", "e4"}
    latest = table_version(spark, path)
    assert not committed_by_others(spark, path, latest - 1, latest, "silver-q"), "its own append"
    assert committed_by_others(spark, path, read_at, latest, "silver-q"), "the backfill's commit"
    assert committed_by_others(spark, path, latest - 1, latest, "silver-other"), "another query's append"
