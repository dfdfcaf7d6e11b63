"""The IoT, payments and customer-change contracts: exact types, JSON paths into envelopes, epoch-ms times,
and the rejection codes of each domain."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pipelines.engine.validation import parse_records
from pipelines.model.contract import contract_path, load_contract
from tests.conftest import CONTRACTS
from tests.unit.test_validation import edit, raw

READING = {
    "reading_id": "dev-00001-00000001", "device_id": "dev-00001", "site_id": "site-001",
    "reading_time": "2026-11-22T10:00:00Z", "temperature_c": 21.5, "humidity_pct": 40,
    "pressure_hpa": 1013.2, "battery_pct": 88.1, "firmware": "1.4.2",
}  # fmt: skip
TXN = {
    "txn_id": "tx-1", "account_id": "acc-1", "card_id": "card-1", "merchant_id": "m-1",
    "merchant_category": "5411", "amount": 12.5, "currency": "EUR", "txn_time": "2026-11-22T10:00:00Z",
    "country": "DE", "channel": "pos", "status": "approved",
}  # fmt: skip
CUSTOMER = {
    "customer_id": "u00001", "email": "ada@example.com", "full_name": "Ada Lovelace", "tier": "gold",
    "country": "GB", "created_at": "2026-11-22T10:00:00.000000Z", "updated_at": "2026-11-22T10:00:00.000000Z",
}  # fmt: skip


def change(op="u", before=CUSTOMER, after=CUSTOMER, lsn=42, **top):
    """An envelope in the real connector's shape (commit time in source.ts_ms; see test_local_cdc.py)."""
    return {"before": before, "after": after, "source": {"lsn": lsn, "ts_ms": 1795341600123}, "op": op, **top}


@pytest.fixture(scope="module")
def contracts():
    return {name: load_contract(contract_path(CONTRACTS, name)) for name in ("iot", "payments", "customers")}


def parse(spark, contract, *values):
    return parse_records(raw(spark, *values), contract).orderBy("offset").collect()


def test_iot_reading_is_typed_as_doubles(spark, contracts):
    (row,) = parse(spark, contracts["iot"], READING)
    assert row.reasons == []
    assert (row.temperature_c, row.humidity_pct, row.pressure_hpa) == (21.5, 40.0, 1013.2)
    assert isinstance(row.humidity_pct, float)  # a JSON integer is a valid double
    assert row.reading_time == dt.datetime(2026, 11, 22, 10, 0)


@pytest.mark.parametrize(
    "value, reasons",
    [
        (edit(READING, temperature_c=480.0), ["out_of_range:temperature_c"]),
        (edit(READING, humidity_pct=100.5), ["out_of_range:humidity_pct"]),
        (edit(READING, battery_pct=-1), ["out_of_range:battery_pct"]),
        (edit(READING, pressure_hpa=300), ["out_of_range:pressure_hpa"]),
        (edit(READING, pressure_hpa="1013.2"), ["bad_type:pressure_hpa"]),
        (edit(READING, device_id=...), ["missing:device_id"]),
        (edit(READING, firmware="v2"), ["bad_format:firmware"]),
        (edit(READING, temperature_c=480.0, humidity_pct=-3, battery_pct=101), [
            "out_of_range:temperature_c", "out_of_range:humidity_pct", "out_of_range:battery_pct"]),
    ],
)
def test_iot_rejections(spark, contracts, value, reasons):
    (row,) = parse(spark, contracts["iot"], value)
    assert row.reasons == reasons


def test_payment_is_typed_exactly(spark, contracts):
    (row,) = parse(spark, contracts["payments"], TXN)
    assert row.reasons == []
    assert row.amount == Decimal("12.50")


@pytest.mark.parametrize(
    "value, reasons",
    [
        (edit(TXN, amount=0), ["out_of_range:amount"]),
        (edit(TXN, amount=-3.5), ["out_of_range:amount"]),
        (edit(TXN, amount=1.005), ["bad_format:amount"]),
        (edit(TXN, amount="12.50"), ["bad_type:amount"]),
        (edit(TXN, channel="phone"), ["not_in_set:channel"]),
        (edit(TXN, merchant_category="54"), ["bad_format:merchant_category"]),
        (edit(TXN, card_id=...), ["missing:card_id"]),
    ],
)
def test_payment_rejections(spark, contracts, value, reasons):
    (row,) = parse(spark, contracts["payments"], value)
    assert row.reasons == reasons


def test_change_envelope_fields_come_from_after_source_and_ts_ms(spark, contracts):
    (row,) = parse(spark, contracts["customers"], change(transaction={"id": "t1"}))
    assert row.reasons == []
    assert (row.op, row.lsn, row.customer_id, row.tier) == ("u", 42, "u00001", "gold")
    assert row.change_time == dt.datetime(2026, 11, 22, 10, 0, 0, 123000)
    assert row.created_at == dt.datetime(2026, 11, 22, 10, 0)
    assert row.extra == '{"transaction":{"id":"t1"}}'  # envelope keys the contract reads are not extra


def test_a_delete_takes_its_customer_id_from_before(spark, contracts):
    (row,) = parse(spark, contracts["customers"], change(op="d", after=None))
    assert row.reasons == []
    assert (row.op, row.customer_id, row.email, row.tier) == ("d", "u00001", None, None)


@pytest.mark.parametrize(
    "value, reasons",
    [
        (change(op="x"), ["not_in_set:op"]),
        (edit(change(), source={"db": "shop"}), ["missing:lsn", "missing:change_time"]),
        (change(after=edit(CUSTOMER, tier="diamond")), ["not_in_set:tier"]),
        (change(after=edit(CUSTOMER, email=...)), ["missing:email"]),
        (change(op="c", before=None, after=None), [
            "missing:customer_id", "missing:email", "missing:full_name", "missing:tier", "missing:country",
            "missing:created_at", "missing:updated_at"]),
        (edit(change(), source={"lsn": 42, "ts_ms": "2026-11-22T10:00:00Z"}), ["bad_type:change_time"]),
    ],
)
def test_change_rejections(spark, contracts, value, reasons):
    (row,) = parse(spark, contracts["customers"], value)
    assert row.reasons == reasons
