"""The orders domain: its contract on the simulator's envelopes (the real connector's shapes for a table with the
default replica identity), and each order's tier at order time, joined by log position."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from pipelines.domains.customers.simulator import CdcFaults
from pipelines.domains.orders.gold import orders_by_tier
from pipelines.domains.orders.simulator import OrdersGenerator, unscaled_base64
from pipelines.engine.validation import parse_records
from pipelines.model.contract import contract_path, load_contract
from tests.conftest import CONTRACTS
from tests.unit.test_validation import raw

START = dt.datetime(2026, 11, 22, 10, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def contract():
    return load_contract(contract_path(CONTRACTS, "orders"))


def test_every_simulated_envelope_gets_exactly_its_promised_reasons(spark, contract):
    events = [e for e in itertools.islice(OrdersGenerator(seed=5, start=START, orders=30, faults=CdcFaults(exact_duplicate=0.05, malformed=0.1)).events(), 400)
              if e.value is not None]  # fmt: skip
    rows = parse_records(raw(spark, *[e.value for e in events]), contract).orderBy("offset").collect()
    assert [tuple(r.reasons) for r in rows] == [e.reasons for e in events]
    kinds = {e.kind for e in events}
    assert {"valid", "exact_duplicate"} <= kinds and len(kinds) > 3, kinds
    ops = {r.op for r in rows if not r.reasons}
    assert ops == {"r", "c", "u", "d"}, ops
    deleted = [r for r in rows if r.op == "d" and not r.reasons]
    assert all(r.order_id and r.amount is None and r.customer_id is None for r in deleted), "placeholders are not read"
    amounts = [r.amount for r in rows if r.amount is not None]
    assert all(isinstance(a, Decimal) and a.as_tuple().exponent == -2 and a > 0 for a in amounts)


def test_unscaled_base64_is_what_the_connector_writes():
    assert unscaled_base64(Decimal("19.99")) == "B88="  # the real connector's bytes (tests/integration/test_local_cdc.py)
    assert unscaled_base64(Decimal("0.00")) == "AA=="  # the placeholder of a key-only delete image


CHANGE = T.StructType(
    [T.StructField(n, t) for n, t in [("op", T.StringType()), ("lsn", T.LongType()), ("change_time", T.TimestampType()),
     ("order_id", T.LongType()), ("customer_id", T.StringType()), ("amount", T.DecimalType(12, 2)),
     ("currency", T.StringType()), ("ordered_at", T.TimestampType())]]  # fmt: skip
)
HISTORY = "customer_id string, tier string, lsn long"


def test_tier_at_order_time_is_the_customers_version_committed_at_or_before_the_order(spark):
    t = dt.datetime(2026, 11, 22, 10)
    changes = spark.createDataFrame(
        [
            ("r", 100, t, 1, "u1", Decimal("10.00"), "EUR", t),  # snapshot: same lsn as the customers' snapshot
            ("c", 205, t, 2, "u1", Decimal("20.00"), "EUR", t),  # after u1 became gold (lsn 200)
            ("u", 300, t, 2, "u1", Decimal("25.00"), "EUR", t),  # amended later: tier is still the one at order time
            ("c", 150, t, 3, "u2", Decimal("5.00"), "USD", t),  # u2 created in the same transaction, lsn 149
            ("c", 160, t, 4, "u9", Decimal("7.00"), "USD", t),  # customer not in the history (yet)
            ("c", 170, t, 5, "u1", Decimal("1.00"), "EUR", t),
            ("d", 180, t, 5, None, None, None, None),  # cancelled
        ],
        CHANGE,
    )
    history = spark.createDataFrame(
        [("u1", "bronze", 100), ("u1", "gold", 200), ("u2", "silver", 149), ("u2", "platinum", 400)], HISTORY
    )
    got = orders_by_tier(changes, history).select("order_id", "customer_id", "tier", "amount", "placed_lsn", "last_lsn")
    want = spark.createDataFrame(
        [(1, "u1", "bronze", Decimal("10.00"), 100, 100), (2, "u1", "gold", Decimal("25.00"), 205, 300),
         (3, "u2", "silver", Decimal("5.00"), 150, 150), (4, "u9", "unknown", Decimal("7.00"), 160, 160)],  # fmt: skip
        "order_id long, customer_id string, tier string, amount decimal(12,2), placed_lsn long, last_lsn long",
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
