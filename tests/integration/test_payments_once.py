"""Payments end to end on the local broker: a seeded mix with injected fraud, sent in two waves with a
`--once` run after each (a restart in between); merchant volumes against an independent computation, fraud
alerts against the simulator's ground truth, and no alert twice."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from decimal import Decimal

import pytest

from pipelines.domains.payments.simulator import PaymentFaults, PaymentsGenerator, score_alerts
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests import support
from tests.support import pipeline, reaching_silver, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def payments_run(tmp_path_factory, kafka, spark):
    import uuid

    from pipelines.model.config import load_settings
    from tests.conftest import write_conf

    topic = f"test.payments.{uuid.uuid4().hex[:10]}"
    settings = load_settings("test", write_conf(tmp_path_factory.mktemp("pay") / "conf", "unused", topics={"payments": topic}))
    gen = PaymentsGenerator(
        seed=9, start=START, accounts=150, txns_per_account_hour=4,
        faults=PaymentFaults(exact_duplicate=0.02, malformed=0.02, fraud=0.03),
    )  # fmt: skip
    events = list(itertools.islice(gen.events(), 5000))
    tallies = []
    for wave in (events[:2600], events[2600:]):
        tallies.append(publish(wave, KafkaSink(settings.kafka, topic, Tally())))
        run_once(spark, settings, ["payments"])
    p = pipeline(settings, "payments")
    txns = reaching_silver(events)
    return {"p": p, "tallies": tallies, "truth": gen.ground_truth(), "txns": txns}


def table(spark, run, name):
    return support.table(spark, run["p"], name)


def test_counts_match_what_was_sent(spark, payments_run):
    expected = [t.expected() for t in payments_run["tallies"]]
    silver = table(spark, payments_run, "payments_transactions").count()
    quarantine = table(spark, payments_run, "payments_transactions_quarantine").count()
    assert (silver, quarantine) == (sum(e["silver"] for e in expected), sum(e["quarantine"] for e in expected))


def test_merchant_volume_equals_an_independent_computation(spark, payments_run):
    want = defaultdict(lambda: [0, 0, Decimal("0.00")])
    for t in payments_run["txns"]:
        at = dt.datetime.fromisoformat(t["txn_time"].replace("Z", "+00:00")).replace(tzinfo=None, second=0, microsecond=0)
        w = want[(at, t["merchant_id"], t["currency"])]
        w[0] += 1
        if t["status"] == "approved":
            w[1] += 1
            w[2] += Decimal(str(t["amount"]))
    got = {
        (r.window_start, r.merchant_id, r.currency): [r.transactions, r.approved, r.approved_amount]
        for r in table(spark, payments_run, "payments_merchant_volume_per_minute").collect()
    }
    assert got == dict(want)


def test_alerts_match_the_ground_truth(spark, payments_run):
    alerts = [r.asDict() for r in table(spark, payments_run, "payments_fraud_alerts").collect()]
    incidents = payments_run["truth"]["incidents"]
    score = score_alerts(alerts, incidents)
    assert len(incidents) >= 40, f"the mix should hold enough fraud to measure ({len(incidents)} incidents)"
    for rule in ("card_testing", "velocity", "impossible_travel"):
        r = score["per_rule"][rule]
        assert r["found"] == r["incidents"] and r["right"] == r["alerts"], f"{rule}: {r}"
    assert score["precision"] >= 0.95 and score["recall"] >= 0.95, score


def test_no_alert_is_written_twice(spark, payments_run):
    alerts = table(spark, payments_run, "payments_fraud_alerts")
    assert alerts.count() == alerts.select("rule", "card_id", "window_start").distinct().count()
    evidence = [(r.rule, t) for r in alerts.collect() for t in r.txn_ids]
    assert len(evidence) == len(set(evidence)), "a transaction is evidence of at most one alert per rule"
