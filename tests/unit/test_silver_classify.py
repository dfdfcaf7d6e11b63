"""Silver deduplication: each record is silver, an exact duplicate, or quarantined; the first copy wins."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality

from pipelines.engine.silver import classify

T0 = dt.datetime(2026, 11, 22, 10, 0, 0)
PARSED = "event_id string, partition int, offset long, kafka_timestamp timestamp, payload_hash string, reasons array<string>"
EXISTING = "event_id string, payload_hash string"


def parsed(spark, rows):
    return spark.createDataFrame(
        [(eid, 0, off, T0 + dt.timedelta(seconds=off), h, reasons) for eid, off, h, reasons in rows], PARSED
    )


def outcomes(df):
    return df.select("event_id", "offset", "_outcome", "reasons")


def expected(spark, rows):
    return spark.createDataFrame(rows, "event_id string, offset long, _outcome string, reasons array<string>")


def test_first_copy_in_a_batch_wins_and_later_copies_are_told_apart(spark):
    batch = parsed(spark, [("a", 1, "h1", []), ("a", 2, "h1", []), ("a", 3, "h2", []), ("b", 4, "h9", [])])
    out = classify(batch, spark.createDataFrame([], EXISTING), "event_id")
    assert_df_equality(
        outcomes(out),
        expected(
            spark,
            [
                ("a", 1, "silver", []),
                ("a", 2, "exact_duplicate", []),
                ("a", 3, "quarantine", ["duplicate_conflict"]),
                ("b", 4, "silver", []),
            ],
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_rows_already_in_silver_win_over_the_whole_batch(spark):
    existing = spark.createDataFrame([("a", "h1")], EXISTING)
    batch = parsed(spark, [("a", 5, "h2", []), ("a", 6, "h1", [])])
    assert_df_equality(
        outcomes(classify(batch, existing, "event_id")),
        expected(spark, [("a", 5, "quarantine", ["duplicate_conflict"]), ("a", 6, "exact_duplicate", [])]),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_invalid_records_keep_their_reasons_and_do_not_take_the_key(spark):
    batch = parsed(spark, [("a", 1, "h0", ["bad_type:price"]), ("a", 2, "h1", []), (None, 3, None, ["invalid_json"])])
    assert_df_equality(
        outcomes(classify(batch, spark.createDataFrame([], EXISTING), "event_id")),
        expected(
            spark,
            [("a", 1, "quarantine", ["bad_type:price"]), ("a", 2, "silver", []), (None, 3, "quarantine", ["invalid_json"])],
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_order_is_kafka_time_then_partition_then_offset(spark):
    later_offset_earlier_time = spark.createDataFrame(
        [("a", 1, 10, T0 + dt.timedelta(seconds=5), "h1", []), ("a", 0, 99, T0, "h2", [])], PARSED
    )
    out = classify(later_offset_earlier_time, spark.createDataFrame([], EXISTING), "event_id")
    winner = [r.payload_hash for r in out.where("_outcome = 'silver'").collect()]
    assert winner == ["h2"]


CDC = "lsn long, customer_id int, partition int, offset long, kafka_timestamp timestamp, payload_hash string, " \
      "reasons array<string>, value binary, _dropped_by array<string>"  # fmt: skip


def test_records_are_copies_only_when_every_key_matches(spark):
    """A database snapshot gives every row the same LSN: (lsn, customer_id) tells them apart."""
    from pipelines.engine.silver import classify_validated

    rows = [(100, c, 0, c, T0, f"h{c}", [], b"{}", []) for c in (1, 2, 3)]  # snapshot: one lsn, three rows
    rows += [(100, 2, 0, 9, T0, "h2", [], b"{}", []), (100, 3, 0, 10, T0, "other", [], b"{}", [])]  # re-send, conflict
    batch = spark.createDataFrame(rows, CDC)
    existing = spark.createDataFrame([(100, 1, "h1")], "lsn long, customer_id int, payload_hash string")
    out = classify_validated(batch, existing, ["lsn", "customer_id"])
    got = {(r.customer_id, r.offset): (r._outcome, tuple(r.reasons)) for r in out.collect()}
    assert got == {
        (1, 1): ("exact_duplicate", ()),  # already in silver
        (2, 2): ("silver", ()), (2, 9): ("exact_duplicate", ()),
        (3, 3): ("silver", ()), (3, 10): ("quarantine", ("duplicate_conflict",)),
    }  # fmt: skip


def test_tombstones_are_skipped_only_when_the_spec_says_so(spark):
    from pipelines.engine.silver import classify_validated

    rows = [(101, 4, 0, 1, T0, None, ["invalid_json"], None, []), (102, 5, 0, 2, T0, "h5", [], b"{}", [])]
    batch = spark.createDataFrame(rows, CDC)
    empty = spark.createDataFrame([], "lsn long, customer_id int, payload_hash string")
    skipped = {r.offset: r._outcome for r in classify_validated(batch, empty, ["lsn", "customer_id"], True).collect()}
    kept = {r.offset: r._outcome for r in classify_validated(batch, empty, ["lsn", "customer_id"]).collect()}
    assert skipped == {1: "tombstone", 2: "silver"}
    assert kept == {1: "quarantine", 2: "silver"}


def test_silver_rows_of_other_keys_are_filtered_where_they_are_read(spark, tmp_path):
    """With `broadcast_keys` (a micro-batch), the lookup's silver rows go through a broadcast semi join with the
    batch's keys before the join with the batch, so the rows of other keys (most of them, in a busy hour) are
    neither shuffled nor sorted; the outcomes are the same either way."""
    others = [(f"other-{i}", f"x{i}") for i in range(500)]
    spark.createDataFrame([*others, ("a", "h1")], EXISTING).write.parquet(str(tmp_path / "silver"))
    existing = spark.read.parquet(str(tmp_path / "silver"))
    batch = parsed(spark, [("a", 5, "h2", []), ("b", 6, "h3", []), ("a", 7, "h1", [])])
    want = expected(spark, [("a", 5, "quarantine", ["duplicate_conflict"]), ("b", 6, "silver", []),
                            ("a", 7, "exact_duplicate", [])])  # fmt: skip

    def semi_joins(out) -> list[str]:
        plan = out._jdf.queryExecution().executedPlan().toString()
        return [line for line in plan.splitlines() if "BroadcastHashJoin" in line and "LeftSemi" in line]

    for broadcast in (True, False):
        out = classify(batch, existing, "event_id", broadcast_keys=broadcast)
        assert_df_equality(outcomes(out), want, ignore_row_order=True, ignore_nullable=True)
        assert bool(semi_joins(out)) is broadcast
