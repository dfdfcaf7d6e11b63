"""Deduplication of re-sends weeks old, as the README states it.

Silver is the dedup state, but a micro-batch only reads the silver rows whose event time is near its own
(within the spec's dedup_horizon, 1 hour for clickstream). Wave 1 stores events of seven weeks ago and of
today; wave 2, in a later run, re-sends some of the old ones:
- an exact re-send (same bytes, so same event time) is counted as an exact duplicate, not stored again;
- a copy with other content and the same event time, or an event time 30 minutes off, is quarantined as
  duplicate_conflict;
- a copy with other content whose event time is a day off (beyond the horizon, and no other record of the
  batch near the first copy's hour) is not compared with the first copy: both are kept, the documented limit.
All of it twice: with the lookup's rows joined by a shuffle, and with the batch's keys broadcast into them (what
a micro-batch does when its lookup holds 1M rows or more).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import types as T

from pipelines.engine.dedup import DEDUP_HASH
from pipelines.engine.delta_io import ensure_table
from pipelines.engine.silver import silver_schema
from pipelines.simulators.base import SimEvent
from tests.support import pipeline, run_once, send, without_gold

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

OLD = dt.datetime(2026, 10, 1, 12, 0, tzinfo=dt.UTC)
TODAY = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def event(event_id: str, at: dt.datetime, page: str = "/") -> dict:
    when = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"event_id": event_id, "event_type": "page_view", "event_time": when, "user_id": "u1",
            "session_id": f"s-{event_id}", "page_url": page}  # fmt: skip


def sim(kind: str, payload: dict) -> SimEvent:
    return SimEvent(kind, b"u1", json.dumps(payload).encode())


@pytest.mark.parametrize(("broadcast", "before_hash"), [(False, False), (True, False), (True, True)],
                         ids=["shuffle-join", "broadcast-keys", "broadcast-keys-silver-without-hash"])  # fmt: skip
def test_re_sends_weeks_old_are_caught_and_conflicts_within_the_horizon(spark, tmp_path, unique_topic, kafka, broadcast,
                                                                        before_hash, monkeypatch):  # fmt: skip
    if broadcast:  # a busy hour's lookup (1M rows and more) takes the batch's keys broadcast into it: the same outcomes
        monkeypatch.setattr("pipelines.engine.dedup.BROADCAST_LOOKUP_MIN", 0)
    test_settings = without_gold(tmp_path, unique_topic)  # silver's dedup: gold is not needed
    p = pipeline(test_settings, "clickstream")
    if before_hash:  # a silver created before session 38: no dedup_hash column, its lookup reads the keys
        schema = T.StructType([f for f in silver_schema(p.contract).fields if f.name != DEDUP_HASH])
        ensure_table(spark, p.layout.silver.path, schema, p.layout.silver.partition_by)
    # old-4 six hours after the others, so that no other record of wave 2 sits near its hour
    old = {f"old-{i}": event(f"old-{i}", OLD + dt.timedelta(minutes=i + (360 if i == 4 else 0))) for i in range(1, 5)}
    today = [event(f"today-{i}", TODAY + dt.timedelta(seconds=i)) for i in range(200)]
    send(test_settings, [sim("valid", e) for e in [*old.values(), *today]])
    run_once(spark, test_settings, ["clickstream"])

    later = [event(f"later-{i}", TODAY + dt.timedelta(hours=1, seconds=i)) for i in range(100)]
    def shifted(e: dict, minutes: int) -> dict:
        at = dt.datetime.fromisoformat(e["event_time"].replace("Z", "+00:00")) + dt.timedelta(minutes=minutes)
        return dict(e, page_url="/changed", event_time=event(e["event_id"], at)["event_time"])

    resends = [
        sim("exact_duplicate", old["old-1"]),
        sim("conflicting_duplicate", dict(old["old-2"], page_url="/changed")),
        sim("conflicting_duplicate", shifted(old["old-3"], 30)),
        sim("beyond_horizon", shifted(old["old-4"], 24 * 60)),
    ]
    send(test_settings, [sim("valid", e) for e in later] + resends)
    run_once(spark, test_settings, ["clickstream"])

    silver = spark.read.format("delta").load(p.layout.silver.path)
    assert (DEDUP_HASH in silver.columns) is not before_hash, "a silver created before the hash keeps its columns"
    copies = {r.event_id: r["count"] for r in silver.where("event_id LIKE 'old-%'").groupBy("event_id").count().collect()}
    assert copies == {"old-1": 1, "old-2": 1, "old-3": 1, "old-4": 2}, (
        "old-1 re-sent exactly and old-2/old-3 conflicting within the horizon are not stored again; old-4's copy "
        f"a day off is beyond the 1-hour horizon, so both copies are kept: {copies}"
    )
    assert silver.count() == 4 + 200 + 100 + 1, "every other event once, plus old-4's second copy"
    quarantined = spark.read.format("delta").load(p.layout.quarantine.path).where(
        "array_contains(reasons, 'duplicate_conflict')").select("event_id").collect()  # fmt: skip
    assert sorted(r.event_id for r in quarantined) == ["old-2", "old-3"]
    audit = spark.read.format("delta").load(p.layout.batches.path).groupBy().sum("exact_duplicates").first()[0]
    assert audit == 1, "the exact re-send of a seven-week-old event is counted as an exact duplicate"
