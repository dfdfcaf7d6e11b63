"""Column encodings of Debezium's JSON change events, as contract options (issue 17): numeric as base64 unscaled
bytes (decimal.handling.mode=precise) or text (=string), timestamp as epoch micros (MicroTimestamp), date as
days since the epoch (Date); unknown columns of `after` into `extra`. The byte strings below are what the real
connector wrote for `numeric(12,2)` values (tests/integration/test_local_cdc.py checks one against the database).
"""

from __future__ import annotations

import base64
import datetime as dt
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from pipelines.domains.orders.simulator import unscaled_base64
from pipelines.engine.validation import parse_records
from pipelines.model.contract import Contract, FieldSpec
from tests.unit.test_validation import raw

CONTRACT = Contract(
    name="order_change",
    version=1,
    extra_in=("after",),
    ignore_keys=("ts_ms",),
    fields=(
        FieldSpec(name="op", type="string", required=True),
        FieldSpec(name="order_id", type="integer", path=("after.order_id", "before.order_id"), required=True),
        FieldSpec(name="amount", type="decimal", precision=12, scale=2, encoding="base64", path=("after.amount",)),
        FieldSpec(name="amount_text", type="decimal", precision=12, scale=2, encoding="text", path=("after.amount_text",)),
        FieldSpec(name="due", type="date", unit="days", path=("after.due",)),
        FieldSpec(name="shipped", type="date", path=("after.shipped",)),
        FieldSpec(name="placed", type="timestamp", unit="us", path=("after.placed",)),
    ),
)


def parsed(spark, *afters):
    values = [{"op": "c", "after": a} for a in afters]
    return parse_records(raw(spark, *values), CONTRACT).orderBy("offset")


@pytest.mark.parametrize("value", ["19.99", "0.01", "-0.01", "-128.00", "1.28", "9999999999.99", "-9999999999.99"])
def test_base64_unscaled_bytes_decode_exactly(spark, value):
    row = parsed(spark, {"order_id": 1, "amount": unscaled_base64(Decimal(value))}).first()
    assert (row.amount, row.reasons) == (Decimal(value), [])


def test_typed_values_of_each_encoding(spark):
    got = parsed(spark, {"order_id": 1, "amount": "B88=", "amount_text": "19.99", "due": 19000, "shipped": "2022-01-09",
                         "placed": 1_700_000_000_123_456})  # fmt: skip
    want = spark.createDataFrame(
        [(1, Decimal("19.99"), Decimal("19.99"), dt.date(2022, 1, 8), dt.date(2022, 1, 9),
          dt.datetime(2023, 11, 14, 22, 13, 20, 123456), [])],  # fmt: skip
        T.StructType([T.StructField("order_id", T.LongType()), T.StructField("amount", T.DecimalType(12, 2)),
                      T.StructField("amount_text", T.DecimalType(12, 2)), T.StructField("due", T.DateType()),
                      T.StructField("shipped", T.DateType()), T.StructField("placed", T.TimestampType()),
                      T.StructField("reasons", T.ArrayType(T.StringType()))]),  # fmt: skip
    )
    assert_df_equality(got.select(*want.columns), want, ignore_nullable=True)


def test_a_mismatched_encoding_is_quarantined_with_a_reason_that_says_which(spark):
    rows = parsed(
        spark,
        {"order_id": 1, "amount": 19.99},  # a number where the contract expects precise mode's bytes
        {"order_id": 2, "amount": "@@@="},  # not base64
        {"order_id": 3, "amount": base64.b64encode((10**13).to_bytes(6, "big")).decode()},  # beyond numeric(12,2)
        {"order_id": 4, "amount": "AQIDBAUGBwgJ"},  # nine bytes: beyond what is decoded
        {"order_id": 5, "amount_text": "1.999"},  # would be rounded
        {"order_id": 6, "amount_text": 19.99, "due": "2022-01-08", "placed": "2023-11-14T22:13:20Z"},
        {"order_id": 7, "shipped": "2022-13-01"},
    ).collect()
    assert [r.reasons for r in rows] == [
        ["bad_type:amount"],
        ["bad_format:amount"],
        ["out_of_range:amount"],
        ["out_of_range:amount"],
        ["bad_format:amount_text"],
        ["bad_type:amount_text", "bad_type:due", "bad_type:placed"],
        ["bad_format:shipped"],
    ]


def test_columns_added_at_the_source_reach_extra_with_their_object(spark):
    rows = parsed(spark, {"order_id": 1, "loyalty_points": 5, "note": None}, {"order_id": 2}).collect()
    assert rows[0].extra == '{"after.loyalty_points":5,"after.note":null}' and rows[0].reasons == []
    assert rows[1].extra is None


def test_a_redelivery_with_a_new_processing_time_is_an_exact_copy(spark):
    first, again = ({"op": "c", "after": {"order_id": 1}, "ts_ms": ms, "transaction": None} for ms in (1000, 2000))
    rows = parse_records(raw(spark, first, again), CONTRACT).orderBy("offset").collect()
    assert rows[0].payload_hash == rows[1].payload_hash and rows[0].extra == '{"transaction":null}'


@pytest.mark.parametrize(
    "field, message",
    [
        (dict(type="integer", encoding="base64"), "encoding applies to decimal fields"),
        (dict(type="decimal", precision=20, encoding="base64"), "up to precision 18"),
        (dict(type="date", unit="ms"), "unit 'ms' does not apply to a date"),
        (dict(type="timestamp", unit="days"), "unit 'days' does not apply to a timestamp"),
    ],
)
def test_options_that_do_not_fit_the_type_are_refused(field, message):
    with pytest.raises(ValueError, match=message):
        FieldSpec(name="x", **field)


def test_extra_in_must_name_an_object_the_fields_read():
    with pytest.raises(ValueError, match="extra_in names 'before'"):
        Contract(name="c", version=1, fields=(FieldSpec(name="a", type="string", path=("after.a",)),), extra_in=("before",))
