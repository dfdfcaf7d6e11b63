"""Fraud rules (pure): each rule on a hand-made account history, a burst is one alert however it is split
into batches, and scoring alerts against a ground truth."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from pipelines.domains.payments.gold import FraudRules, evaluate
from pipelines.domains.payments.simulator import score_alerts

RULES = FraudRules()  # the spec's thresholds: 5 tests <= 2.00 in 10 min, 8 in 1 min, travel 30 min, 10x median
T0 = int(dt.datetime(2026, 11, 22, 10).timestamp() * 1000)


def txn(n, second, amount="25.00", card="c1", country="DE", channel="pos"):
    return {"txn_id": f"t{n:03d}", "card_id": card, "account_id": "a1", "t_ms": T0 + second * 1000,
            "amount": amount, "country": country, "channel": channel}  # fmt: skip


def normal_history(n=6):
    return [txn(i, i * 3600, amount=str(20 + i)) for i in range(n)]  # one an hour, 20..25


def run(txns, batch=None):
    state, alerts = {}, {}
    chunks = [txns] if batch is None else [txns[i : i + batch] for i in range(0, len(txns), batch)]
    for chunk in chunks:
        state, out = evaluate(state, chunk, RULES)
        for a in out:
            alerts[(a["rule"], a["card_id"], a["window_start"])] = a  # what the upsert keeps
    return sorted(alerts.values(), key=lambda a: (a["rule"], a["window_start"]))


def test_normal_spending_raises_nothing():
    assert run(normal_history(20)) == []


def test_card_testing_burst_is_one_alert_with_its_evidence():
    base = 30 * 3600
    probes = [txn(100 + i, base + 40 * i, amount="1.00", channel="ecom") for i in range(7)]
    (alert,) = run(normal_history() + probes)
    assert alert["rule"] == "card_testing"
    assert alert["txn_ids"] == [p["txn_id"] for p in probes]
    assert alert["amounts"] == [Decimal("1.00")] * 7
    assert alert["window_start"] == dt.datetime.fromtimestamp((T0 + base * 1000) / 1000)


def test_four_probes_are_not_enough():
    probes = [txn(100 + i, 30 * 3600 + 40 * i, amount="1.00", channel="ecom") for i in range(4)]
    assert run(normal_history() + probes) == []


def test_velocity_needs_eight_in_a_minute():
    quick = [txn(200 + i, 40 * 3600 + 5 * i, channel="ecom") for i in range(8)]
    slow = [txn(300 + i, 50 * 3600 + 20 * i, channel="ecom") for i in range(8)]  # 8 in 140 s
    assert [a["rule"] for a in run(normal_history() + quick + slow)] == ["velocity"]


def test_impossible_travel_card_present_only():
    home = txn(400, 60 * 3600)
    away = txn(401, 60 * 3600 + 600, country="BR")
    online = txn(402, 70 * 3600 + 600, country="US", channel="ecom")
    (alert,) = run([home, away, txn(403, 70 * 3600), online])
    assert alert["rule"] == "impossible_travel" and alert["txn_ids"] == ["t400", "t401"]
    assert alert["countries"] == ["DE", "BR"]


def test_large_amount_against_the_accounts_median():
    big = txn(500, 80 * 3600, amount="400.00", channel="ecom")  # median 22.5 -> limit 225
    cash = txn(501, 81 * 3600, amount="400.00", channel="atm")
    alerts = run(normal_history() + [big, cash])
    assert [(a["rule"], a["txn_ids"]) for a in alerts] == [("large_amount", ["t500"])]


def test_no_large_amount_without_enough_history():
    assert run(normal_history(4) + [txn(500, 80 * 3600, amount="900.00")]) == []


@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_alerts_do_not_depend_on_how_transactions_are_batched(batch):
    probes = [txn(100 + i, 30 * 3600 + 40 * i, amount="1.50", channel="ecom") for i in range(9)]
    quick = [txn(200 + i, 40 * 3600 + 4 * i, channel="ecom") for i in range(10)]
    txns = normal_history() + probes + quick
    assert run(txns, batch=batch) == run(txns)


def test_a_replayed_transaction_changes_nothing():
    probes = [txn(100 + i, 30 * 3600 + 40 * i, amount="1.00", channel="ecom") for i in range(6)]
    state, first = evaluate({}, normal_history() + probes, RULES)
    _, again = evaluate(state, probes, RULES)
    assert len(first) == 1 and again == []


def test_scoring_counts_right_alerts_and_found_incidents():
    incidents = [
        {"kind": "velocity", "card_id": "c1", "txn_ids": ["t1", "t2"]},
        {"kind": "card_testing", "card_id": "c2", "txn_ids": ["t5"]},
    ]
    alerts = [
        {"rule": "velocity", "card_id": "c1", "txn_ids": ["t2", "t3"]},  # right
        {"rule": "velocity", "card_id": "c2", "txn_ids": ["t5"]},  # wrong rule for that incident
        {"rule": "large_amount", "card_id": "c9", "txn_ids": ["t9"]},  # no incident
    ]
    score = score_alerts(alerts, incidents)
    assert (score["precision"], score["recall"]) == (1 / 3, 1 / 2)
    assert score["per_rule"]["velocity"] == {"alerts": 2, "right": 1, "incidents": 1, "found": 1}
