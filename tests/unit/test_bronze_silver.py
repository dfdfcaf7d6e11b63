"""Which bronze rows a silver query reading bronze takes after bronze and silver ran in one query (pure)."""

from __future__ import annotations

from chispa import assert_df_equality

from pipelines.engine.bronze_silver import BRONZE, bronze_filter

ROWS = "topic string, partition int, offset long"


def test_rows_below_the_offsets_the_one_query_took_are_left_out(spark):
    bronze = spark.createDataFrame(
        [("t", 0, 9), ("t", 0, 10), ("t", 1, 3), ("t", 1, 4), ("t", 2, 0), ("other", 0, 1)], ROWS
    )
    source = {"reads": BRONZE, "from_version": 7, "from_offsets": {"t": {"0": 10, "1": 4}}}
    kept = bronze.where(bronze_filter(source))
    # partition 2 and topic 'other' were not in the one query's offsets: nothing of them is left out
    expected = spark.createDataFrame([("t", 0, 10), ("t", 1, 4), ("t", 2, 0), ("other", 0, 1)], ROWS)
    assert_df_equality(kept, expected, ignore_row_order=True)


def test_without_offsets_every_row_is_taken():
    assert bronze_filter({}) is None
    assert bronze_filter({"reads": BRONZE, "from_version": 0, "from_offsets": {}}) is None
