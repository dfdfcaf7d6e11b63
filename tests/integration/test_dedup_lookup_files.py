"""A large dedup lookup reads payload hashes only from the silver files that hold one of the batch's keys (real
Delta tables, through Delta and as the files a silver query lists)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from chispa import assert_df_equality

from pipelines.engine.bronze import BRONZE_SCHEMA
from pipelines.engine.dedup import DEDUP_HASH, DEDUP_HASH_PROPERTY, LookupSizes, existing_rows, key_hash
from pipelines.engine.silver import OUTCOME, classify_validated, silver_schema, validate
from pipelines.engine.table_files import TableFiles
from tests.support import clickstream_tables

pytestmark = [pytest.mark.slow]

AT = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)


def append(spark, p, ids: list[str], hashed: bool = True) -> None:  # noqa: ANN001
    """Silver rows of `ids` at AT, in one file; with their dedup hash as silver writes it, unless not `hashed` (rows
    written by hand or by an older lakepipe)."""
    rows = [{"event_id": i, "event_time": AT, "event_date": AT.date(), "payload_hash": f"h-{i}"} for i in ids]
    frame = spark.createDataFrame(rows, silver_schema(p.contract))
    if hashed:
        frame = frame.withColumn(DEDUP_HASH, key_hash(p.spec.dedup_keys))
    frame.coalesce(1).write.format("delta").mode("append").save(p.layout.silver.path)


def batch(spark, ids: list[str]):  # noqa: ANN001, ANN201
    """A raw micro-batch of one record of each id, at AT."""
    def record(offset: int, event_id: str) -> tuple:
        event = {"event_id": event_id, "event_type": "page_view", "event_time": "2026-11-22T09:00:00.000Z",
                 "user_id": "u1", "session_id": "s1"}  # fmt: skip
        return (b"u1", json.dumps(event).encode(), "t", 0, offset, AT, 0, [], AT, AT.date())
    return spark.createDataFrame([record(i, e) for i, e in enumerate(ids)], BRONZE_SCHEMA)


def lookups(spark, p, as_parquet: bool):  # noqa: ANN001, ANN201
    """A function: the raw batch of `ids` and its lookup in `p`'s silver (`large_ok`: a silver query's, large)."""
    path, event_time, keys = p.layout.silver.path, p.contract.field(p.spec.event_time), p.spec.dedup_keys

    def lookup(ids: list[str], large_ok: bool = True):  # noqa: ANN202
        raw = batch(spark, ids)
        files = TableFiles(path, p.spec.event_time) if as_parquet else None
        return raw, existing_rows(spark, path, raw, event_time, keys, 3600, LookupSizes() if large_ok else None, files, validate(raw, p.contract, None)
                                  .select(*keys))  # fmt: skip

    return lookup


@pytest.mark.parametrize("as_parquet", [False, True], ids=["through-delta", "listed-files"])
def test_a_large_lookup_reads_only_the_files_holding_the_batch_keys(spark, tmp_path, monkeypatch, as_parquet):
    p = clickstream_tables(spark, tmp_path)
    keys = p.spec.dedup_keys
    for prefix in "abcd":  # four files, all in the batch's hour
        append(spark, p, [f"{prefix}{i}" for i in range(3)])
    monkeypatch.setattr("pipelines.engine.dedup.BROADCAST_LOOKUP_MIN", 0)  # every lookup is a large one
    lookup = lookups(spark, p, as_parquet)

    raw, found = lookup(["b1", "d2", "new-1"])
    rows = sorted(tuple(r) for r in found.rows.collect())
    assert rows == [(f"{f}{i}", f"h-{f}{i}") for f in "bd" for i in range(3)], "the rows of the two files holding b1, d2"
    assert found.broadcast_keys, "their rows of other keys are left to the broadcast semi join"
    _, full = lookup(["b1", "d2", "new-1"], large_ok=False)  # a small lookup: every row of the window, one read
    assert full.rows.count() == 12

    def outcomes(rows, broadcast: bool):  # noqa: ANN001, ANN202
        return classify_validated(validate(raw, p.contract, None), rows, keys, broadcast_keys=broadcast).select(
            "event_id", OUTCOME, "reasons")  # fmt: skip

    assert_df_equality(outcomes(found.rows, True), outcomes(full.rows, False), ignore_row_order=True)
    assert {r.event_id: r[OUTCOME] for r in outcomes(found.rows, True).collect()} == {
        "b1": "quarantine", "d2": "quarantine", "new-1": "silver"}, "b1 and d2 conflict with their silver copies"  # fmt: skip

    _, none = lookup(["new-2", "new-3"])
    assert (none.rows.collect(), none.broadcast_keys) == ([], False), "no file holds a key of the batch: no hash read"


@pytest.mark.parametrize("as_parquet", [False, True], ids=["through-delta", "listed-files"])
def test_a_large_lookup_finds_keys_by_their_hash_and_still_reads_rows_written_without_one(
    spark, tmp_path, monkeypatch, as_parquet
):  # fmt: skip
    p = clickstream_tables(spark, tmp_path)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{p.layout.silver.path}`").first()
    assert detail.properties[DEDUP_HASH_PROPERTY] == "event_id", "a new silver holds every row's hash of its dedup key"
    append(spark, p, ["a0", "a1"])
    append(spark, p, ["b0", "b1"])
    append(spark, p, ["c0", "c1"], hashed=False)  # no hash: its file may hold any key
    monkeypatch.setattr("pipelines.engine.dedup.BROADCAST_LOOKUP_MIN", 0)
    lookup = lookups(spark, p, as_parquet)

    raw, found = lookup(["b1", "new-1"])
    assert sorted(r.event_id for r in found.rows.collect()) == ["b0", "b1", "c0", "c1"], "b's file by hash, c's as unknown"
    raw, found = lookup(["c1"])
    outcome = classify_validated(validate(raw, p.contract, None), found.rows, p.spec.dedup_keys, broadcast_keys=True)
    assert [(r.event_id, r[OUTCOME]) for r in outcome.collect()] == [("c1", "quarantine")], "a copy of a row without a hash"
