"""Sessions kept by pandas in 1, 8 or 64 buckets of session ids, or by the JVM function per session id: the same gold
rows, micro-batch by micro-batch.

A real streaming query (a Delta table of silver-like events read one commit per micro-batch, watermarked,
`sessionize`, each micro-batch MERGEd into a real Delta table as the gold query does) over three batches: sessions
that grow, one that a late-arriving event bridges into an earlier one (retracted), and many session ids, so that
every bucket holds several. The result must not depend on the bucket count or on who keeps the state, and must equal
`merge_sessions` over all the events (the watermark, 3 hours behind, leaves none of them out). A fourth batch then
brings events older than the watermark, one of them onto an open session id: both kinds of state leave them out.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.errors import UnsupportedOperationException
from pyspark.sql import types as T

from pipelines.engine.delta_io import upsert_nonempty
from pipelines.engine.gold.sessions import bucket_count, event_session, merge_sessions, sessionize, state_kind
from pipelines.errors import JarsMissingError

GAP = "30 minutes"
T0 = dt.datetime(2026, 3, 1, 12, 0)
EVENTS = T.StructType([
    T.StructField("session_id", T.StringType()), T.StructField("user_id", T.StringType()),
    T.StructField("event_type", T.StringType()), T.StructField("price", T.DecimalType(12, 2)),
    T.StructField("quantity", T.LongType()), T.StructField("event_time", T.TimestampType()),
])  # fmt: skip
GOLD = T.StructType([
    T.StructField("session_id", T.StringType()), T.StructField("user_id", T.StringType()),
    T.StructField("session_start", T.TimestampType()), T.StructField("session_end", T.TimestampType()),
    T.StructField("events", T.LongType()), T.StructField("page_views", T.LongType()),
    T.StructField("purchases", T.LongType()), T.StructField("revenue", T.DecimalType(38, 4)),
    T.StructField("converted", T.BooleanType()),
])  # fmt: skip


def event(session: int, minute: int, kind: str = "page_view", price: str | None = None, qty: int | None = None) -> tuple:
    return (f"s-{session:03d}", f"u-{session % 17}", kind, Decimal(price) if price else None, qty, T0 + dt.timedelta(minutes=minute))


def batches() -> list[list[tuple]]:
    first = [event(0, 0), event(0, 50)]  # two sessions of s-000 (a 50-minute gap)
    first += [event(s, s % 20) for s in range(1, 120)]
    second = [event(0, 25, "purchase", "19.99", 2)]  # bridges s-000's two sessions: the later one is retracted
    second += [event(s, 20 + s % 20, "purchase", "5.00", 1) for s in range(1, 120, 3)]  # grows every third session
    third = [event(s, 90) for s in range(1, 120, 7)]  # a new session of every seventh id (60+ minutes on)
    return [first, second, third]


def expected() -> set[tuple]:
    by_id: dict[str, list] = {}
    for sid, user, kind, price, qty, at in (e for b in batches() for e in b):
        t_us = int((at - dt.datetime(1970, 1, 1)).total_seconds() * 1_000_000)
        by_id.setdefault(sid, []).append(event_session(t_us, user, kind, price, qty))
    out = set()
    for sid, events in by_id.items():
        for s in merge_sessions(events, 30 * 60 * 1_000_000):
            start = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=s.start_us)
            end = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=s.end_us)
            out.add((sid, s.user_id, start, end, s.events, s.page_views, s.purchases, Decimal(s.revenue), s.purchases > 0))
    return out


def run(spark, root, buckets: int, state: str = "pandas", late: bool = False) -> set[tuple]:  # noqa: ANN001
    name = f"{state}-{buckets}-{late}"
    source, gold = str(root / f"events-{name}"), str(root / f"gold-{name}")
    spark.createDataFrame([], GOLD).write.format("delta").save(gold)
    for rows in batches() + ([LATE] if late else []):  # one commit each: one micro-batch each (maxFilesPerTrigger 1, one file a commit)
        spark.createDataFrame(rows, EVENTS).coalesce(1).write.format("delta").mode("append").save(source)
    events = spark.readStream.format("delta").option("maxFilesPerTrigger", 1).load(source).withWatermark("event_time", "3 hours")
    query = (
        sessionize(events, GAP, buckets, state).writeStream.outputMode("update")
        .foreachBatch(lambda batch, _: upsert_nonempty(batch, gold, ("session_id", "session_start"), "retracted"))
        .option("checkpointLocation", str(root / f"checkpoint-{name}")).trigger(availableNow=True).start()
    )  # fmt: skip
    query.awaitTermination()
    assert sum(p["numInputRows"] for p in query.recentProgress) == sum(len(b) for b in batches()) + late * len(LATE)
    assert len([p for p in query.recentProgress if p["numInputRows"]]) == 3 + late
    return {tuple(r) for r in spark.read.format("delta").load(gold).collect()}


def test_the_bucket_count_does_not_change_the_sessions(spark, tmp_path):
    want = expected()
    assert len(want) == 1 + 119 + len(range(1, 120, 7))  # s-000 merged into one; every seventh id has two
    for buckets in (1, 8, 64):
        assert run(spark, tmp_path, buckets) == want, f"{buckets} buckets"


# Older than the watermark once the third batch has moved it (its newest event 90 minutes after T0, 3 hours behind):
# one onto s-000 (open in state), one of a new id.
LATE = [event(0, -100, "purchase", "7.00", 3), event(500, -120)]


def test_the_jvm_state_gives_the_same_sessions(spark, tmp_path):
    assert run(spark, tmp_path, 1, "jvm") == expected()


def test_events_older_than_the_watermark_are_left_out_by_both_states(spark, tmp_path):
    want = expected()
    assert run(spark, tmp_path, 8, "pandas", late=True) == want
    assert run(spark, tmp_path, 8, "jvm", late=True) == want


def test_the_jvm_state_without_its_class_says_what_is_missing(spark, tmp_path, monkeypatch):
    from pipelines.engine.gold import sessions

    monkeypatch.setattr(sessions, "JVM_SESSIONS", "io.lakepipe.gold.NoSuchSessions")
    events = spark.readStream.format("rate").load().selectExpr(
        "'s' AS session_id", "'u' AS user_id", "'page_view' AS event_type", "CAST(NULL AS DECIMAL(18,4)) AS price",
        "CAST(NULL AS BIGINT) AS quantity", "timestamp AS event_time").withWatermark("event_time", "1 hour")  # fmt: skip
    with pytest.raises(JarsMissingError, match=r"state: jvm needs io\.lakepipe\.gold\.NoSuchSessions on Spark's classpath"):
        sessionize(events, GAP, 8, "jvm")
    with pytest.raises(UnsupportedOperationException, match="unsupported in a batch query"):
        sessionize(spark.createDataFrame([event(1, 0)], EVENTS), GAP, 8, "jvm")


@pytest.mark.parametrize("given, kind", [("jvm", "jvm"), (" JVM ", "jvm"), ("pandas", "pandas")])
def test_the_state_option_names_pandas_or_jvm(given, kind):
    assert state_kind(given) == kind


@pytest.mark.parametrize("given", ["java", "", "scala"])
def test_another_state_is_refused(given):
    with pytest.raises(ValueError, match="option state must be one of pandas, jvm"):
        state_kind(given)


@pytest.mark.parametrize("given, count", [("8", 8), (8, 8), (" 64 ", 64), ("1", 1)])
def test_the_buckets_option_is_a_whole_number(given, count):
    assert bucket_count(given) == count


@pytest.mark.parametrize("given", ["0", "-4", "eight", "8.5", "", True])
def test_a_bucket_count_that_is_not_a_positive_whole_number_is_refused(given):
    with pytest.raises(ValueError, match="buckets must be a whole number of at least 1"):
        bucket_count(given)
