"""Data quality on real streams: each action (warn, drop, quarantine, fail) on hand-made events, a row
breaking three rules listing three reasons, batch-level results per batch, and quarantine replay exactly once
(also after a replay killed half-way)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid

import pytest
from pyspark.sql import functions as F

from pipelines.errors import PipelineFailedError
from pipelines.model.config import load_settings
from pipelines.model.layout import events_table
from pipelines.ops import quarantine
from pipelines.simulators.base import KafkaSink, Tally, encode, publish
from tests.conftest import CONTRACTS, write_conf
from tests.support import lakepipe_here, pipeline, run_once, without_gold

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
COUNTRIES = ["US", "DE", "FR"]


def rule(kind, action, name, **kwargs):
    return {"type": kind, "kwargs": kwargs, "meta": {"action": action, "name": name}}


def suite(countries=COUNTRIES, fail_device=None, batch_action="warn"):
    rules = [
        rule("expect_column_values_to_be_in_set", "warn", "unknown_device", column="device", value_set=["desktop", "mobile"]),
        rule("expect_column_values_to_not_match_regex", "drop", "internal_page", column="page_url", regex="^/internal"),
        rule("expect_column_value_lengths_to_be_between", "quarantine", "long_query", column="search_query", max_value=10),
        rule("expect_column_values_to_match_regex", "quarantine", "bad_referrer", column="referrer", regex="^[a-z]+$"),
        rule("expect_column_values_to_be_in_set", "quarantine", "unsupported_country", column="country", value_set=countries),
        rule("expect_table_row_count_to_be_between", batch_action, "small_batches", max_value=3),
    ]
    if fail_device:
        rules.append(rule("expect_column_values_to_not_be_in_set", "fail", "banned_device", column="device", value_set=[fail_device]))
    return {"name": "clickstream_events", "expectations": rules}


def event(n, **fields):
    p = {"event_id": f"e{n}", "event_type": "page_view", "event_time": (T0 + dt.timedelta(seconds=n)).isoformat(),
         "user_id": "u00001", "session_id": "s1", "page_url": "/home", "device": "desktop", "country": "US"}  # fmt: skip
    p.update(fields)
    return encode("valid", "u00001", {k: v for k, v in p.items() if v is not ...})


@pytest.fixture
def quality_env(tmp_path, kafka):
    """Settings whose clickstream pipeline (without gold) uses a suite written by the test (`write(suite_dict)`)."""
    return _quality_env(tmp_path, gold=False)


@pytest.fixture
def quality_env_with_gold(tmp_path, kafka):
    return _quality_env(tmp_path, gold=True)


def _quality_env(tmp_path, gold: bool):
    schemas = tmp_path / "schemas"
    shutil.copytree(CONTRACTS, schemas)
    topic = f"test.quality.{uuid.uuid4().hex[:10]}"
    if gold:
        settings = load_settings("test", write_conf(tmp_path / "conf", topic, schemas=schemas))
    else:
        settings = without_gold(tmp_path, topic, schemas=schemas)

    def write(data):
        (schemas / "clickstream" / "expectations.json").write_text(json.dumps(data))

    def send(*events):
        tally = publish(list(events), KafkaSink(settings.kafka, topic, Tally()))
        assert not tally.failed

    write(suite())
    return settings, write, send


def read(spark, table):
    return spark.read.format("delta").load(table.path)


def test_each_action_on_a_real_stream(spark, quality_env, capsys):
    settings, _write, send = quality_env
    send(
        event(1),
        event(2, device="tv"),  # warn: kept, with the warning
        event(3, page_url="/internal/health"),  # drop: counted, not stored
        event(4, search_query="a very long query", referrer="BAD!", country="JP"),  # three quarantine rules
        event(5, session_id=..., country="JP"),  # a contract rule and a quality rule
        event(6, device="mobile"),
    )
    run_once(spark, settings, ["clickstream"])
    p = pipeline(settings, "clickstream")
    silver = {r.event_id: r.warnings for r in read(spark, p.layout.silver).collect()}
    assert silver == {"e1": [], "e2": ["unknown_device"], "e6": []}
    reasons = {r.event_id: r.reasons for r in read(spark, p.layout.quarantine).collect()}
    assert reasons == {"e4": ["long_query", "bad_referrer", "unsupported_country"],
                       "e5": ["missing:session_id", "unsupported_country"]}  # fmt: skip
    audit = read(spark, p.layout.batches).first()
    assert (audit.silver_records, audit.quarantined_records, audit.dropped_records) == (3, 2, 1)
    results = {r.expectation: r for r in read(spark, p.layout.quality).collect()}
    counts = {name: (r.element_count, r.unexpected_count, r.success) for name, r in results.items() if r.element_count is not None}
    assert counts == {
        "unknown_device": (6, 1, False), "internal_page": (6, 1, False), "long_query": (6, 1, False),
        "bad_referrer": (6, 1, False), "unsupported_country": (6, 2, False),
    }  # fmt: skip
    small = results["small_batches"]  # batch level, through Great Expectations: 3 silver rows <= 3
    assert (small.action, small.success, small.observed_value, small.batch_id) == ("warn", True, "3", 0)

    send(*[event(n) for n in range(10, 15)])  # a second batch of 5 rows breaks the batch rule (warn: kept)
    run_once(spark, settings, ["clickstream"])
    second = read(spark, p.layout.quality).where("batch_id = 1 AND expectation = 'small_batches'").collect()
    assert [(r.success, r.observed_value) for r in second] == [(False, "5")]
    assert read(spark, p.layout.silver).count() == 8
    per_batch = read(spark, p.layout.quality).groupBy("batch_id").count().orderBy("batch_id").collect()
    assert [(r.batch_id, r["count"]) for r in per_batch] == [(0, 6), (1, 6)], "one row per rule per batch"

    conf = ["--conf-dir", str(settings.source.parent), "--env", "test"]
    out = lakepipe_here(capsys, "quality", "clickstream", "--since", "1 hour", *conf)
    line = next(ln for ln in out.splitlines() if " unsupported_country " in ln).split()
    assert line[2:7] == ["quarantine", "2", "11", "2", "1"], line  # batches, rows checked, failing, failed batches
    docs = settings.source.parent.parent / "docs"
    assert "index.html" in lakepipe_here(capsys, "quality", "--docs", str(docs), *conf)
    pages = sorted(p.parent.parent.name for p in docs.rglob("validations/clickstream_events/*/*/*.html"))
    assert pages == ["batch 0", "batch 1"], "one Data Docs page per recorded batch"


def test_a_fail_rule_stops_the_query_naming_rule_and_rows(spark, quality_env):
    settings, write, send = quality_env
    write(suite(fail_device="hacker"))
    send(event(1), event(2, device="hacker"), event(3, device="hacker"))
    for attempt in (1, 2):  # a restart meets the same batch and fails the same way
        with pytest.raises(PipelineFailedError) as err:
            run_once(spark, settings, ["clickstream"])
        message = str(err.value)
        assert "query 'clickstream.silver' failed" in message and "quality rule 'banned_device' (action fail)" in message
        assert "broken by 2 rows; first 2: test.quality." in message, message  # Kafka coordinates follow
        assert message.count("(device='hacker')") == 2, message
    p = pipeline(settings, "clickstream")
    assert read(spark, p.layout.silver).count() == 0, "nothing of the failing batch is written"
    banned = read(spark, p.layout.quality).where("expectation = 'banned_device'").collect()
    assert [(r.batch_id, r.unexpected_count, r.success) for r in banned] == [(0, 2, False)], "recorded once"
    failed = spark.read.format("delta").load(events_table(settings).path).where("event = 'failed'").collect()
    assert [r.query_name for r in failed] == ["clickstream.silver"] * 2, "the event log holds each failed run"
    assert all("quality rule 'banned_device' (action fail)" in r.error for r in failed), failed[0].error


def test_replay_after_a_fix_is_exactly_once_even_when_killed_half_way(spark, quality_env_with_gold, monkeypatch):
    settings, write, send = quality_env_with_gold
    send(event(1), event(2, country="JP"), event(3, country="JP"), event(4, country="JP", search_query="far too long text"))
    run_once(spark, settings, ["clickstream"])
    p = pipeline(settings, "clickstream")
    assert read(spark, p.layout.silver).count() == 1
    assert quarantine.replay(spark, p, reason="unsupported_country").to_silver == 0, "nothing passes before the fix"

    write(suite(countries=[*COUNTRIES, "JP"]))  # the rule was wrong: JP is supported
    p = pipeline(settings, "clickstream")

    def crash(*_args, **_kwargs):
        raise RuntimeError("killed after the silver append, before marking quarantine")

    monkeypatch.setattr(quarantine, "mark", crash)
    with pytest.raises(RuntimeError):
        quarantine.replay(spark, p, reason="unsupported_country")
    monkeypatch.undo()
    assert read(spark, p.layout.silver).count() == 3, "the killed replay got e2 and e3 into silver"

    result = quarantine.replay(spark, p, reason="unsupported_country")
    assert (result.selected, result.to_silver, result.already_in_silver, result.still_failing) == (3, 0, 2, 1)
    again = quarantine.replay(spark, p, reason="unsupported_country")
    assert again.selected == 0, "the rows that now pass are marked; e4 no longer has that reason"
    assert sorted(r.event_id for r in read(spark, p.layout.silver).collect()) == ["e1", "e2", "e3"]
    q = {r.event_id: (r.reasons, r.replay_id) for r in read(spark, p.layout.quarantine).collect()}
    assert q["e4"] == (["long_query"], None), "still failing, with its new reasons"
    assert q["e2"][1] == q["e3"][1] == result.replay_id

    run_once(spark, settings, ["clickstream"])  # replayed rows flow on to gold
    views = read(spark, p.layout.output("clickstream_activity_per_minute")).agg(F.sum("events")).first()[0]
    assert views == 3


def test_a_failing_batch_rule_stops_the_query_before_the_writes(spark, quality_env):
    """Batch rules that may fail the batch run before its writes (the others run beside them)."""
    settings, write, send = quality_env
    write(suite(batch_action="fail"))
    send(*[event(n) for n in range(1, 6)])  # 5 silver rows: more than the rule's 3
    with pytest.raises(PipelineFailedError) as err:
        run_once(spark, settings, ["clickstream"])
    assert "quality rule 'small_batches' (expect_table_row_count_to_be_between) failed: observed 5" in str(err.value)
    p = pipeline(settings, "clickstream")
    assert read(spark, p.layout.silver).count() == 0, "nothing of the failing batch is written"
    rows = read(spark, p.layout.quality).where("expectation = 'small_batches'").collect()
    assert [(r.batch_id, r.success, r.observed_value) for r in rows] == [(0, False, "5")], "recorded once"
