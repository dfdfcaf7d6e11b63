"""Parsing raw Kafka values against the clickstream contract: types, every rejection code, leftovers."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from pipelines.engine.validation import parse_records

VALID = {
    "event_id": "e1",
    "event_type": "purchase",
    "event_time": "2026-11-22T10:15:00.250+01:00",
    "user_id": "u1",
    "session_id": "s1",
    "product_id": "p1",
    "category": "books",
    "price": 12.5,
    "quantity": 2,
    "currency": "EUR",
}

RAW_SCHEMA = T.StructType(
    [
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
    ]
)


def raw(spark, *values):
    rows = []
    for i, v in enumerate(values):
        b = v if isinstance(v, (bytes, type(None))) else (v if isinstance(v, str) else json.dumps(v)).encode()
        rows.append((bytearray(b) if b is not None else None, "t", 0, i))
    return spark.createDataFrame(rows, RAW_SCHEMA)


def reasons_of(spark, contract, *values, parse):
    return [r.reasons for r in parse_records(raw(spark, *values), contract, parse).orderBy("offset").collect()]


@pytest.fixture(scope="module", params=["jvm", "sql"])
def parse(request):
    """Each test runs on both ways of reading the JSON (pipelines/engine/validation.py): same rows expected."""
    return request.param


def edit(base: dict, **changes) -> dict:
    """A copy of `base` with fields changed (`...` removes one)."""
    d = dict(base)
    for k, v in changes.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return d


def with_(**changes):
    return edit(VALID, **changes)


def test_valid_purchase_is_typed_exactly(spark, clickstream_contract, parse):
    out = parse_records(raw(spark, VALID), clickstream_contract, parse)
    expected = spark.createDataFrame(
        [("e1", dt.datetime(2026, 11, 22, 9, 15, 0, 250000), Decimal("12.5000"), 2, [])],
        "event_id string, event_time timestamp, price decimal(18,4), quantity bigint, reasons array<string>",
    )
    assert_df_equality(
        out.select("event_id", "event_time", "price", "quantity", "reasons"), expected, ignore_nullable=True
    )


REJECTIONS = [
        (b"", ["invalid_json"]),
        (None, ["invalid_json"]),
        (b"{not json", ["invalid_json"]),
        (b"\xff\xfe{}", ["invalid_json"]),
        (b'{"a":1,"a":2}', ["invalid_json"]),
        (b'{"a":{"b":1,"b":2}}', ["invalid_json"]),  # a key twice in a nested object
        (b"{'event_id':'e1'}", ["invalid_json"]),  # single quotes, which Spark's JSON reader would allow
        (b'{"price":NaN}', ["invalid_json"]),  # as would it NaN
        (b'{"a":1,}', ["invalid_json"]),
        (b"[1,2]", ["not_an_object"]),
        (b'"text"', ["not_an_object"]),
        (b"null", ["not_an_object"]),
        (b" 7 ", ["not_an_object"]),
        (with_(event_id=...), ["missing:event_id"]),
        (with_(event_id=""), ["missing:event_id"]),
        (with_(event_id=None), ["missing:event_id"]),
        (with_(user_id=7), ["bad_type:user_id"]),
        (with_(price="12.50"), ["bad_type:price"]),
        (with_(quantity=2.5), ["bad_type:quantity"]),
        (with_(quantity="2"), ["bad_type:quantity"]),
        (with_(event_type="refund"), ["not_in_set:event_type"]),
        (with_(price=-1), ["out_of_range:price"]),
        (with_(quantity=0), ["out_of_range:quantity"]),
        (with_(price=1e30), ["out_of_range:price"]),
        (with_(price=1.23456), ["bad_format:price"]),
        (with_(currency="eur"), ["bad_format:currency"]),
        (with_(event_time="2026-11-22 10:15:00"), ["bad_format:event_time"]),
        (with_(event_time="2026-13-45T10:15:00Z"), ["bad_format:event_time"]),
        (with_(product_id=...), ["missing:product_id"]),
        (with_(country=3), ["bad_type:country"]),
]


@pytest.fixture(scope="module")
def rejection_results(spark, clickstream_contract, parse):
    """All rejection cases parsed in one Spark job (one row per case, in case order)."""
    return reasons_of(spark, clickstream_contract, *[value for value, _ in REJECTIONS], parse=parse)


@pytest.mark.parametrize("case", range(len(REJECTIONS)), ids=lambda i: "+".join(REJECTIONS[i][1]))
def test_each_rejection_reason(rejection_results, case):
    value, expected = REJECTIONS[case]
    assert rejection_results[case] == expected, f"value {value!r}"


def test_conditional_fields_apply_only_to_their_event_types(spark, clickstream_contract, parse):
    page_view = {k: VALID[k] for k in ("event_id", "event_time", "user_id", "session_id")} | {"event_type": "page_view"}
    add = with_(event_type="add_to_cart", category=..., currency=...)
    assert reasons_of(spark, clickstream_contract, page_view, add, parse=parse) == [[], []]


def test_a_record_breaking_three_rules_lists_all_three(spark, clickstream_contract, parse):
    bad = with_(price="1", quantity=0, currency="euro")
    assert reasons_of(spark, clickstream_contract, bad, parse=parse) == [
        ["bad_type:price", "out_of_range:quantity", "bad_format:currency"]
    ]


def test_unknown_fields_are_kept_as_json_and_integral_numbers_are_integers(spark, clickstream_contract, parse):
    value = with_(quantity=3.0, coupon={"code": "X1", "pct": 10}, ab_test="b")
    row = parse_records(raw(spark, value), clickstream_contract, parse).collect()[0]
    assert row.reasons == []
    assert row.quantity == 3
    assert json.loads(row.extra) == {"coupon": {"code": "X1", "pct": 10}, "ab_test": "b"}


@pytest.mark.parametrize(("written", "expected"), [
    ("1.0e2", (100, [])), ("1E1", (10, [])), ("3.0", (3, [])), ("1.5e1", (15, [])),
    ("2.5e0", (None, ["bad_type:quantity"])), ("1.0e-2", (None, ["bad_type:quantity"])),
    ("1e30", (None, ["out_of_range:quantity"])), ("9007199254740993e0", (None, ["out_of_range:quantity"])),
])  # fmt: skip
def test_an_integer_written_with_an_exponent_is_an_integer(spark, clickstream_contract, written, expected, parse):
    text = json.dumps(with_(quantity=12345)).replace("12345", written)
    row = parse_records(raw(spark, text), clickstream_contract, parse).collect()[0]
    assert (row.quantity, row.reasons) == expected


def test_payload_hash_tells_exact_resends_from_conflicting_ones(spark, clickstream_contract, parse):
    same = parse_records(raw(spark, VALID, VALID, with_(price=13)), clickstream_contract, parse).orderBy("offset")
    hashes = [r.payload_hash for r in same.collect()]
    assert hashes[0] == hashes[1] != hashes[2]


def test_large_value_parses(spark, clickstream_contract, parse):
    big = with_(page_url="x" * 1_000_000)
    row = parse_records(raw(spark, big), clickstream_contract, parse).collect()[0]
    assert row.reasons == [] and len(row.page_url) == 1_000_000


def test_a_kafka_connect_schema_wrapper_is_taken_off_when_the_contract_says_so(spark, parse):
    """JsonConverter with schemas.enable=true: {"schema": ..., "payload": <the change>}; both forms parse alike."""
    import dataclasses
    import json

    from pipelines.engine.validation import parse_records
    from pipelines.model.contract import contract_path, load_contract
    from tests.conftest import CONTRACTS

    contract = load_contract(contract_path(CONTRACTS, "customers"))
    change = {"before": None, "after": {"customer_id": "u00001", "email": "a@example.com", "full_name": "A B",
              "tier": "gold", "country": "DE", "created_at": "2026-11-22T10:00:00.000000Z",
              "updated_at": "2026-11-22T10:00:00.000000Z"}, "source": {"lsn": 7, "ts_ms": 1795341600000}, "op": "c"}  # fmt: skip
    wrapped = {"schema": {"type": "struct", "optional": False, "name": "shop.public.customers.Envelope"}, "payload": change}
    values = [json.dumps(change), json.dumps(wrapped)]
    assert contract.connect_envelope, "the shipped customers contract takes both converter forms"
    plain = parse_records(raw(spark, *values), dataclasses.replace(contract, connect_envelope=False), parse).collect()
    unwrapping = parse_records(raw(spark, *values), contract, parse).collect()
    assert plain[0].reasons == [] and plain[1].reasons != []  # without the option a wrapper is no change event
    assert [r.reasons for r in unwrapping] == [[], []]
    assert unwrapping[0].payload_hash == unwrapping[1].payload_hash == plain[0].payload_hash
    assert (unwrapping[1].customer_id, unwrapping[1].lsn, unwrapping[1].extra) == ("u00001", 7, None)
