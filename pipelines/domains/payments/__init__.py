"""Payments: merchant volumes per minute and fraud alerts (gold.py), card transactions with fraud (simulator.py)."""

from __future__ import annotations

import datetime as dt

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.payments.simulator import PaymentFaults, PaymentsGenerator, score_alerts

FAULTS = {
    "duplicates": "exact re-sends",
    "malformed": "invalid JSON, wrong types, missing fields, out of range, not in set",
    "fraud": "fraud incidents started (per transaction)",
}


def simulator(o: SimulatorOptions) -> PaymentsGenerator:
    faults = PaymentFaults(exact_duplicate=o.rate("duplicates"), malformed=o.rate("malformed"), fraud=o.rate("fraud"))
    return PaymentsGenerator(seed=o.seed, start=o.start, faults=faults)


def demo_source(seed: int, now: dt.datetime) -> PaymentsGenerator:
    faults = PaymentFaults(exact_duplicate=0.02, malformed=0.02, fraud=0.02)
    return PaymentsGenerator(seed=seed, start=now - dt.timedelta(hours=2), accounts=300, txns_per_account_hour=3,
                             faults=faults)  # fmt: skip


def summary(run: DemoRun) -> dict:
    alerts = [r.asDict() for r in run.read("payments_fraud_alerts").collect()]
    score = score_alerts(alerts, run.source.ground_truth()["incidents"])
    run.say(f"  fraud alerts {score['alerts']}, incidents injected {score['incidents']}: "
            f"precision {score['precision']:.2f}, recall {score['recall']:.2f}")  # fmt: skip
    for rule, r in score["per_rule"].items():
        run.say(f"    {rule:<18} alerts {r['alerts']:>4} (right {r['right']}), incidents {r['incidents']:>4} (found {r['found']})")
    run.say("  quarantine: " + run.quarantine_reasons("payments_transactions_quarantine"))
    return score


DOMAIN = Domain(pipeline="payments", faults=FAULTS, simulator=simulator, demo=Demo(source=demo_source, summary=summary))
