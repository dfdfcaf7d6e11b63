"""Synthetic card payments with injected fraud, whose ground truth is kept apart from the events.

Deterministic for a seed, in simulated time. Accounts (one or two cards each, a home country, a typical
spend) pay merchants (each with an MCC and a country) at exponential intervals; most use is card-present at
home, some is online. Injected incidents, each recorded in `ground_truth()` (never in an event):
- card_testing: a burst of tiny online amounts on one card;
- velocity: many ordinary transactions on one card within a minute;
- impossible_travel: card-present use in another country minutes after use at home;
- large_amount: one amount far above the account's usual spend.
Exact re-sends and malformed events are injected at rates, like the other simulators.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from pipelines.simulators.base import RecentEvents, SimEvent, encode, iso_utc

COUNTRIES = {"US": "USD", "DE": "EUR", "FR": "EUR", "GB": "GBP", "ES": "EUR", "BR": "BRL"}
MCC = ("5411", "5812", "5999", "4111", "5732", "5942", "7011", "5541")  # grocery, restaurants, retail...
FRAUD_KINDS = ("card_testing", "velocity", "impossible_travel", "large_amount")
MALFORMED = ("invalid_json", "zero_amount", "bad_channel", "missing_card", "text_amount")


@dataclass(frozen=True)
class PaymentFaults:
    exact_duplicate: float = 0.0
    malformed: float = 0.0
    fraud: float = 0.0  # probability, per normal transaction, that a fraud incident starts

    def __post_init__(self) -> None:
        if any(r < 0 for r in vars(self).values()) or self.exact_duplicate + self.malformed > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")


@dataclass
class _Account:
    account_id: str
    cards: tuple[str, ...]
    country: str
    typical: float


class PaymentsGenerator:
    def __init__(
        self,
        seed: int = 23,
        start: dt.datetime | None = None,
        accounts: int = 300,
        merchants: int = 120,
        txns_per_account_hour: float = 1.0,
        faults: PaymentFaults = PaymentFaults(),
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.start = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.faults = faults
        self.mean_gap = 3600.0 / txns_per_account_hour
        self.accounts = [
            _Account(
                f"acc-{n:05d}", tuple(f"card-{n:05d}-{c}" for c in range(rng.choice([1, 1, 2]))),
                rng.choice(list(COUNTRIES)), round(rng.lognormvariate(3.3, 0.5), 2),
            )
            for n in range(accounts)
        ]
        self.merchants = [(f"m-{n:04d}", rng.choice(MCC), rng.choice(list(COUNTRIES))) for n in range(merchants)]
        self.home_merchants = {c: [m for m in self.merchants if m[2] == c] or self.merchants for c in COUNTRIES}
        self._seq = itertools.count()
        self.queue: list = []
        for i in range(accounts):
            self._schedule(self.start.timestamp() + rng.expovariate(1 / self.mean_gap), ("normal", i))
        self.recent = RecentEvents(rng)
        self.incidents: list[dict] = []
        self._sent_fraud: set[str] = set()
        self._serial = 0

    def events(self) -> Iterator[SimEvent]:
        while True:
            yield self.next_event()

    def ground_truth(self) -> dict:
        """The incidents whose transactions have all been generated (one cut short by the end of a run is not
        in it: its remaining transactions were never sent)."""
        done = [i for i in self.incidents if all(t in self._sent_fraud for t in i["txn_ids"])]
        return {"incidents": done, "unfinished": len(self.incidents) - len(done)}

    def next_event(self) -> SimEvent:
        f = self.faults
        r = self.rng.random()
        if r < f.exact_duplicate and self.recent.events:
            return self.recent.resend()
        if r < f.exact_duplicate + f.malformed:
            return self._malformed()
        t, _, job = heapq.heappop(self.queue)
        if job[0] == "normal":
            acc = self.accounts[job[1]]
            self._schedule(t + self.rng.expovariate(1 / self.mean_gap), job)
            if self.rng.random() < f.fraud:
                self._incident(acc, t)
            event = encode("valid", None, self._normal(acc, t))
        else:
            event = encode(job[0], None, job[1])
            self._sent_fraud.add(job[1]["txn_id"])
        event = SimEvent(event.kind, json.loads(event.value)["card_id"].encode(), event.value, (), event.headers)
        return self.recent.add(event)

    # -- transactions ---------------------------------------------------------------------------------------

    def _schedule(self, t: float, job: tuple) -> None:
        heapq.heappush(self.queue, (t, next(self._seq), job))

    def _txn(self, acc: _Account, card: str, t: float, amount: float, merchant: tuple, channel: str, country: str) -> dict:
        self._serial += 1
        return {
            "txn_id": f"tx-{self.rng.getrandbits(40):010x}{self._serial:07d}", "account_id": acc.account_id,
            "card_id": card, "merchant_id": merchant[0], "merchant_category": merchant[1],
            "amount": round(max(amount, 0.01), 2), "currency": COUNTRIES[country],
            "txn_time": iso_utc(dt.datetime.fromtimestamp(t, dt.UTC)), "country": country, "channel": channel,
            "status": "approved" if self.rng.random() < 0.97 else "declined",
        }  # fmt: skip

    def _normal(self, acc: _Account, t: float) -> dict:
        rng = self.rng
        channel = rng.choices(("pos", "ecom", "atm"), (70, 25, 5))[0]
        merchant = rng.choice(self.home_merchants[acc.country])
        amount = acc.typical * rng.lognormvariate(0, 0.6)
        if channel == "atm":
            amount = rng.choice([20, 40, 60, 100, 200])
        return self._txn(acc, rng.choice(acc.cards), t, amount, merchant, channel, acc.country)

    def _incident(self, acc: _Account, t: float) -> None:
        rng = self.rng
        kind = rng.choice(FRAUD_KINDS)
        card = rng.choice(acc.cards)
        at = t + rng.uniform(30, 300)
        txns = []
        if kind == "card_testing":
            for _ in range(rng.randint(6, 10)):
                at += rng.uniform(10, 50)
                txns.append(self._txn(acc, card, at, rng.uniform(0.5, 1.99), rng.choice(self.merchants), "ecom", acc.country))
        elif kind == "velocity":
            for _ in range(rng.randint(9, 12)):
                at += rng.uniform(1, 5)
                txns.append(self._txn(acc, card, at, acc.typical * rng.uniform(0.5, 2), rng.choice(self.merchants), "ecom", acc.country))
        elif kind == "impossible_travel":
            other = rng.choice([c for c in COUNTRIES if c != acc.country])
            home = rng.choice(self.home_merchants[acc.country])
            txns.append(self._txn(acc, card, at, acc.typical, home, "pos", acc.country))
            at += rng.uniform(120, 900)
            txns.append(self._txn(acc, card, at, acc.typical * 3, rng.choice(self.home_merchants[other]), "pos", other))
        else:
            merchant = rng.choice(self.home_merchants[acc.country])
            txns.append(self._txn(acc, card, at, acc.typical * rng.uniform(25, 60), merchant, "ecom", acc.country))
        for p in txns:
            self._schedule(dt.datetime.fromisoformat(p["txn_time"]).timestamp(), (kind, p))
        self.incidents.append({
            "kind": kind, "account_id": acc.account_id, "card_id": card,
            "txn_ids": [p["txn_id"] for p in txns], "start": txns[0]["txn_time"], "end": txns[-1]["txn_time"],
        })  # fmt: skip

    def _malformed(self) -> SimEvent:
        acc = self.rng.choice(self.accounts)
        t = self.queue[0][0] if self.queue else self.start.timestamp()
        p = self._normal(acc, t)
        kind = self.rng.choice(MALFORMED)
        key = p["card_id"]
        if kind == "invalid_json":
            return SimEvent(kind, key.encode(), json.dumps(p).encode()[:-2], ("invalid_json",))
        if kind == "zero_amount":
            p["amount"] = 0
            return encode(kind, key, p, ("out_of_range:amount",))
        if kind == "bad_channel":
            p["channel"] = "phone"
            return encode(kind, key, p, ("not_in_set:channel",))
        if kind == "missing_card":
            del p["card_id"]
            return encode(kind, key, p, ("missing:card_id",))
        p["amount"] = str(p["amount"])
        return encode(kind, key, p, ("bad_type:amount",))


def score_alerts(alerts: list[dict], incidents: list[dict]) -> dict:
    """Precision and recall of fraud alerts against the simulator's ground truth, overall and per rule.

    An alert is right when an incident of the same kind on the same card shares a transaction with its
    evidence; an incident is found when at least one alert is right about it.
    """
    by_card: dict[tuple[str, str], list[tuple[int, set]]] = {}
    for n, i in enumerate(incidents):
        by_card.setdefault((i["kind"], i["card_id"]), []).append((n, set(i["txn_ids"])))
    right: list[str] = []  # the rule of each right alert
    found: set[int] = set()
    for a in alerts:
        hits = [n for n, ids in by_card.get((a["rule"], a["card_id"]), []) if ids & set(a["txn_ids"])]
        if hits:
            right.append(a["rule"])
            found.update(hits)
    per_rule = {
        kind: {
            "alerts": sum(a["rule"] == kind for a in alerts),
            "right": right.count(kind),
            "incidents": sum(i["kind"] == kind for i in incidents),
            "found": sum(incidents[n]["kind"] == kind for n in found),
        }
        for kind in FRAUD_KINDS
    }
    return {
        "alerts": len(alerts),
        "incidents": len(incidents),
        "precision": len(right) / len(alerts) if alerts else 1.0,
        "recall": len(found) / len(incidents) if incidents else 1.0,
        "per_rule": per_rule,
    }
