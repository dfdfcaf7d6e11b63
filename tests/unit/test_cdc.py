"""SCD1 and SCD2 from change events: a hand-made example, and a property test that shuffles and duplicates
random change logs (through the real parsing and dedup) and compares with applying the changes in order."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from pipelines.domains.customers.gold import revenue_per_tier_per_hour
from pipelines.domains.customers.simulator import iso_micros
from pipelines.engine.cdc import scd1_current, scd2_history
from pipelines.engine.silver import classify
from pipelines.engine.validation import parse_records
from pipelines.model.contract import contract_path, load_contract
from tests.cdc_reference import apply_in_order
from tests.conftest import CONTRACTS
from tests.unit.test_validation import raw

T0 = 1795341600000  # 2026-11-22 10:00 UTC


def envelope(op, cid, lsn, minute, tier="bronze", email=None, country="DE"):
    """A change in the connector's shape (see tests/integration/test_local_cdc.py)."""
    row = {"customer_id": cid, "email": email or f"{cid}@example.com", "full_name": "A B", "tier": tier,
           "country": country, "created_at": iso_micros(T0), "updated_at": iso_micros(T0 + minute * 60_000)}  # fmt: skip
    return {
        "before": row if op in ("u", "d") else None, "after": None if op == "d" else row, "op": op,
        "source": {"lsn": lsn, "ts_ms": T0 + minute * 60_000}, "ts_ms": T0 + minute * 60_000 + 150,
    }  # fmt: skip


@pytest.fixture(scope="module")
def contract():
    return load_contract(contract_path(CONTRACTS, "customers"))


def silver_changes(spark, contract, envelopes):
    """Envelopes as Kafka values, through the pipeline's parsing and dedup (first copy of each change)."""
    parsed = parse_records(raw(spark, *[json.dumps(e) for e in envelopes]), contract)
    empty = spark.createDataFrame([], "lsn long, customer_id string, payload_hash string")
    kept = classify(parsed.withColumn("kafka_timestamp", F.current_timestamp()), empty, ["lsn", "customer_id"])
    return kept.where("_outcome = 'silver'").drop("_outcome")


def history_tuples(df):
    to_ms = lambda t: None if t is None else round(t.replace(tzinfo=dt.UTC).timestamp() * 1000)  # noqa: E731
    return sorted(
        (r.customer_id, r.email, r.full_name, r.tier, r.country, to_ms(r.valid_from), to_ms(r.valid_to), r.is_current, r.lsn)
        for r in df.collect()
    )


def test_hand_made_history(spark, contract):
    log = [
        envelope("r", "u1", 10, 0, tier="bronze"),
        envelope("u", "u1", 20, 5, tier="gold"),
        envelope("r", "u2", 11, 0),
        envelope("d", "u2", 30, 7),
        envelope("c", "u3", 40, 9, tier="silver"),
    ]
    changes = silver_changes(spark, contract, list(reversed(log)))  # arrival order is irrelevant
    ts = lambda minute: dt.datetime(2026, 11, 22, 10, minute)  # noqa: E731
    expected = spark.createDataFrame(
        [("u1", "bronze", ts(0), ts(5), False, 10), ("u1", "gold", ts(5), None, True, 20),
         ("u2", "bronze", ts(0), ts(7), False, 11), ("u3", "silver", ts(9), None, True, 40)],
        "customer_id string, tier string, valid_from timestamp, valid_to timestamp, is_current boolean, lsn long",
    )  # fmt: skip
    got = scd2_history(changes).select(*expected.columns)
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    current = scd1_current(changes).select("customer_id", "tier", "lsn")
    assert sorted(map(tuple, current.collect())) == [("u1", "gold", 20), ("u3", "silver", 40)]


def random_log(rng: random.Random, n: int) -> list[dict]:
    """A random but valid change log: snapshot reads, then inserts, updates and deletes (and re-inserts)."""
    live, log, lsn, minute = set(), [], 100, 0
    for i in range(5):  # a snapshot: one lsn for all its rows
        log.append(envelope("r", f"u{i}", lsn, 0))
        live.add(f"u{i}")
    for _ in range(n):
        lsn += rng.randint(1, 3)
        minute += rng.choice([0, 1, 2])  # equal change times happen
        cid = rng.choice([f"u{i}" for i in range(8)])
        if cid not in live:
            log.append(envelope("c", cid, lsn, minute, tier=rng.choice(["bronze", "gold"])))
            live.add(cid)
        elif rng.random() < 0.2:
            log.append(envelope("d", cid, lsn, minute))
            live.discard(cid)
        else:
            log.append(envelope("u", cid, lsn, minute, tier=rng.choice(["silver", "gold", "platinum"]),
                                country=rng.choice(["DE", "FR"])))  # fmt: skip
    return log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_and_duplicated_changes_give_the_in_order_result(spark, contract, seed):
    rng = random.Random(seed)
    log = random_log(rng, 40)
    arrived = log + rng.sample(log, 15)  # re-sends
    rng.shuffle(arrived)
    changes = silver_changes(spark, contract, arrived)
    current, history = apply_in_order(log)
    assert history_tuples(scd2_history(changes)) == history
    got_current = {r.customer_id: (r.email, r.full_name, r.tier, r.country, r.lsn) for r in scd1_current(changes).collect()}
    assert got_current == current
    open_rows = [h for h in history if h[7]]
    assert len(open_rows) == len(current), "one open version per live customer"


def test_revenue_uses_the_tier_valid_at_purchase_time(spark):
    ts = lambda minute: dt.datetime(2026, 11, 22, 10, minute)  # noqa: E731
    history = spark.createDataFrame(
        [("u1", "bronze", ts(0), ts(30)), ("u1", "gold", ts(30), None), ("u2", "silver", ts(0), None)],
        "customer_id string, tier string, valid_from timestamp, valid_to timestamp",
    )
    events = spark.createDataFrame(
        [("purchase", "u1", ts(10), "EUR", "10.00", 2), ("purchase", "u1", ts(30), "EUR", "5.00", 1),
         ("purchase", "u2", ts(45), "EUR", "7.50", 2), ("purchase", "u9", ts(50), "EUR", "1.00", 1),
         ("page_view", "u2", ts(46), None, None, None)],
        "event_type string, user_id string, event_time timestamp, currency string, price string, quantity long",
    ).withColumn("price", F.col("price").cast("decimal(18,4)")).withColumn("event_date", F.to_date("event_time"))  # fmt: skip
    got = revenue_per_tier_per_hour(events, history).select("tier", "orders", F.col("revenue").cast("string"))
    assert sorted(map(tuple, got.collect())) == [
        ("bronze", 1, "20.0000"), ("gold", 1, "5.0000"), ("silver", 1, "15.0000"), ("unknown", 1, "1.0000")
    ]
