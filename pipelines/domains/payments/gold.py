"""Payments gold: merchant volume per minute, and fraud alerts from rules whose thresholds live in the spec.

Fraud rules run per account in state (transformWithState, RocksDB), transaction by transaction in event-time
order within a micro-batch:
- card_testing: at least `card_testing_count` transactions of at most `card_testing_max_amount` on one card
  within `card_testing_window`;
- velocity: at least `velocity_count` transactions on one card within `velocity_window`;
- impossible_travel: card-present use (pos or atm) of one card in two countries within `travel_window`;
- large_amount: a purchase more than `large_amount_factor` times the median of the account's previous
  purchases, once it has `large_amount_min_history` of them (cash withdrawals and amounts small enough to
  be card tests are left out of both).
An alert is one row keyed by (rule, card_id, window_start) with its evidence (txn ids and amounts). While a
burst goes on, later transactions extend the same alert (same key, updated in place), so a burst is one
alert; the key is fixed when the alert opens, and the state is checkpointed, so a restart or a re-run batch
upserts the same rows again and never duplicates an alert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from statistics import median

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle, TimerValues

from pipelines.engine.gold.worker_time import from_ms, to_ms
from pipelines.model.durations import micros

RULES = ("card_testing", "velocity", "impossible_travel", "large_amount")
CARD_PRESENT = ("pos", "atm")
ALERT_SCHEMA = (
    "rule string, card_id string, account_id string, window_start timestamp, window_end timestamp, "
    "txn_count int, txn_ids array<string>, amounts array<decimal(18,2)>, countries array<string>"
)


def merchant_volume_per_minute(events: DataFrame) -> DataFrame:
    """Per minute, merchant and currency: transactions, approved ones, and the approved amount (exact)."""
    approved = F.col("status") == "approved"
    agg = events.groupBy(F.window("txn_time", "1 minute"), "merchant_id", "merchant_category", "currency").agg(
        F.count(F.lit(1)).alias("transactions"),
        F.count(F.when(approved, 1)).alias("approved"),
        F.coalesce(F.sum(F.when(approved, F.col("amount"))), F.lit(0)).cast("decimal(38,2)").alias("approved_amount"),
    )
    return agg.select(
        F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"),
        "merchant_id", "merchant_category", "currency", "transactions", "approved", "approved_amount",
    )  # fmt: skip


@dataclass(frozen=True)
class FraudRules:
    card_testing_count: int = 5
    card_testing_max_amount: Decimal = Decimal("2.00")
    card_testing_window_ms: int = 10 * 60_000
    velocity_count: int = 8
    velocity_window_ms: int = 60_000
    travel_window_ms: int = 30 * 60_000
    large_amount_factor: Decimal = Decimal(10)
    large_amount_min_history: int = 5
    history: int = 50  # amounts kept per account for the median

    @property
    def horizon_ms(self) -> int:
        return max(self.card_testing_window_ms, self.velocity_window_ms, self.travel_window_ms)


def evaluate(state: dict, txns: list[dict], rules: FraudRules) -> tuple[dict, list[dict]]:
    """Apply the rules to one account's `txns` (in order) from `state`: the new state and the alerts that
    opened or grew, as rows (pure). `txns` have txn_id, card_id, account_id, t_ms, amount, country, channel.
    """
    cards = {c: [dict(x) for x in xs] for c, xs in state.get("cards", {}).items()}
    open_alerts = {k: dict(v) for k, v in state.get("open", {}).items()}
    amounts = [Decimal(a) for a in state.get("amounts", [])]
    changed: dict[str, dict] = {}
    for t in txns:
        buf = cards.setdefault(t["card_id"], [])
        if any(x["txn_id"] == t["txn_id"] for x in buf):
            continue
        buf.append({k: t[k] for k in ("txn_id", "t_ms", "amount", "country", "channel")})
        buf[:] = [x for x in buf if abs(t["t_ms"] - x["t_ms"]) <= rules.horizon_ms]

        def near(window_ms: int, buf=buf, t=t) -> list[dict]:
            return [x for x in buf if abs(t["t_ms"] - x["t_ms"]) < window_ms]

        small = [x for x in near(rules.card_testing_window_ms) if Decimal(x["amount"]) <= rules.card_testing_max_amount]
        if len(small) >= rules.card_testing_count:
            _raise(open_alerts, changed, "card_testing", t, small, rules.card_testing_window_ms)
        quick = near(rules.velocity_window_ms)
        if len(quick) >= rules.velocity_count:
            _raise(open_alerts, changed, "velocity", t, quick, rules.velocity_window_ms)
        if t["channel"] in CARD_PRESENT:
            away = [x for x in near(rules.travel_window_ms) if x["channel"] in CARD_PRESENT and x["country"] != t["country"]]
            if away:
                _raise(open_alerts, changed, "impossible_travel", t, [*away, buf[-1]], rules.travel_window_ms)
        amount = Decimal(t["amount"])
        if t["channel"] != "atm" and amount > rules.card_testing_max_amount:  # purchases, not cash or probes
            if len(amounts) >= rules.large_amount_min_history and amount > rules.large_amount_factor * median(amounts):
                _raise(open_alerts, changed, "large_amount", t, [buf[-1]], 0)
            amounts = [*amounts, amount][-rules.history :]
    newest = max((x["t_ms"] for xs in cards.values() for x in xs), default=0)
    open_alerts = {k: a for k, a in open_alerts.items() if newest - a["end_ms"] <= rules.horizon_ms}
    cards = {c: xs for c, xs in cards.items() if xs}
    new_state = {"cards": cards, "open": open_alerts, "amounts": [str(a) for a in amounts]}
    return new_state, list(changed.values())


def _raise(open_alerts: dict, changed: dict, rule: str, t: dict, evidence: list[dict], window_ms: int) -> None:
    """Open an alert for (rule, card), or extend the open one if this is the same burst going on."""
    key = f"{rule}|{t['card_id']}"
    alert = open_alerts.get(key)
    if alert is None or window_ms == 0 or t["t_ms"] - alert["end_ms"] >= window_ms:
        alert = {
            "rule": rule, "card_id": t["card_id"], "account_id": t["account_id"],
            "start_ms": min(x["t_ms"] for x in evidence), "end_ms": 0, "evidence": [],
        }  # fmt: skip
    known = {x["txn_id"] for x in alert["evidence"]}
    alert["evidence"] = sorted([*alert["evidence"], *[x for x in evidence if x["txn_id"] not in known]],
                               key=lambda x: (x["t_ms"], x["txn_id"]))  # fmt: skip
    alert["end_ms"] = max(alert["end_ms"], *[x["t_ms"] for x in evidence])
    open_alerts[key] = alert
    changed[f"{key}|{alert['start_ms']}"] = _alert_row(alert)


def _alert_row(a: dict) -> dict:
    ev = a["evidence"]
    return {
        "rule": a["rule"], "card_id": a["card_id"], "account_id": a["account_id"],
        "window_start": from_ms(a["start_ms"]), "window_end": from_ms(a["end_ms"]), "txn_count": len(ev),
        "txn_ids": [x["txn_id"] for x in ev], "amounts": [Decimal(x["amount"]) for x in ev],
        "countries": [x["country"] for x in ev],
    }  # fmt: skip


class _FraudDetector(StatefulProcessor):
    def __init__(self, rules: FraudRules) -> None:
        self.rules = rules

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("fraud", "json string")

    def handleInputRows(self, key, rows, timerValues: TimerValues) -> Iterator[Row]:  # noqa: N802
        txns = [
            {"txn_id": r.txn_id, "card_id": r.card_id, "account_id": r.account_id, "t_ms": to_ms(r.txn_time),
             "amount": str(r.amount), "country": r.country, "channel": r.channel}
            for r in rows
        ]  # fmt: skip
        txns.sort(key=lambda t: (t["t_ms"], t["txn_id"]))
        before = json.loads(self.state.get()[0]) if self.state.exists() else {}
        after, alerts = evaluate(before, txns, self.rules)
        self.state.update((json.dumps(after),))
        for a in alerts:
            yield Row(**a)

    def close(self) -> None:
        pass


def fraud_alerts(
    events: DataFrame,
    card_testing_count: str = "5",
    card_testing_max_amount: str = "2.00",
    card_testing_window: str = "10 minutes",
    velocity_count: str = "8",
    velocity_window: str = "1 minute",
    travel_window: str = "30 minutes",
    large_amount_factor: str = "10",
    large_amount_min_history: str = "5",
) -> DataFrame:
    """Fraud alerts per account (streaming only), one row per (rule, card, window), updated while it grows."""
    rules = FraudRules(
        card_testing_count=int(card_testing_count),
        card_testing_max_amount=Decimal(card_testing_max_amount),
        card_testing_window_ms=micros(card_testing_window) // 1000,
        velocity_count=int(velocity_count),
        velocity_window_ms=micros(velocity_window) // 1000,
        travel_window_ms=micros(travel_window) // 1000,
        large_amount_factor=Decimal(large_amount_factor),
        large_amount_min_history=int(large_amount_min_history),
    )
    slim = events.select("txn_id", "account_id", "card_id", "txn_time", "amount", "country", "channel")
    return slim.groupBy("account_id").transformWithState(
        _FraudDetector(rules), ALERT_SCHEMA, outputMode="Update", timeMode="None"
    )

