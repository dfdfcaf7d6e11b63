"""Synthetic e-commerce clickstream: users browse, search, add to cart, and some buy.

Deterministic for a seed. Time is simulated: each event advances a clock by an exponential gap (mean
`1 / events_per_second`), starting at `start`, so a run of any length covers realistic minutes and
sessions. Faults are injected at the configured rates; each fault kind records the quarantine reasons the
pipeline must give.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from pipelines.simulators.base import SimEvent

CATEGORIES = {  # category: (min, max) unit price in USD
    "books": (5, 40),
    "electronics": (40, 1500),
    "clothing": (10, 150),
    "home": (15, 400),
    "toys": (5, 80),
    "grocery": (1, 30),
}
COUNTRIES = {  # country: (currency, USD rate, decimals, UTC offset used in event_time)
    "US": ("USD", Decimal("1"), 2, -5),
    "DE": ("EUR", Decimal("0.92"), 2, 1),
    "FR": ("EUR", Decimal("0.92"), 2, 1),
    "GB": ("GBP", Decimal("0.79"), 2, 0),
    "JP": ("JPY", Decimal("151"), 0, 9),
    "CA": ("CAD", Decimal("1.37"), 2, -5),
}
DEVICES = ("desktop", "mobile", "tablet")
REFERRERS = (None, "google", "newsletter", "instagram", "partner")
TRANSITIONS = {  # from event type: [(next event type, weight)]; None ends the session
    "page_view": [("page_view", 3), ("product_view", 5), ("search", 3), (None, 2)],
    "search": [("product_view", 6), ("search", 2), ("page_view", 1), (None, 1)],
    "product_view": [("product_view", 4), ("add_to_cart", 3), ("page_view", 2), ("search", 1), (None, 2)],
    "add_to_cart": [("checkout", 4), ("product_view", 3), ("remove_from_cart", 1), (None, 1)],
    "remove_from_cart": [("product_view", 2), ("checkout", 1), (None, 1)],
    "checkout": [("purchase", 7), ("page_view", 1), (None, 2)],
    "purchase": [("page_view", 1), (None, 4)],
}
HEADERS = (("source", b"lakepipe-simulator"), ("content-type", b"application/json"))
MALFORMED = ("invalid_json", "wrong_type", "missing_field", "out_of_range", "not_in_set")


@dataclass(frozen=True)
class FaultRates:
    """Probability, per event, of emitting each kind of fault instead of a normal event."""

    exact_duplicate: float = 0.0
    conflicting_duplicate: float = 0.0
    malformed: float = 0.0  # spread evenly over the MALFORMED kinds
    late: float = 0.0
    out_of_order: float = 0.0

    def __post_init__(self) -> None:
        total = self.exact_duplicate + self.conflicting_duplicate + self.malformed + self.late + self.out_of_order
        if any(r < 0 for r in vars(self).values()) or total > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")


@dataclass
class _Session:
    session_id: str
    user_id: str
    country: str
    device: str
    referrer: str | None
    last: str | None = None
    cart: list = field(default_factory=list)
    sent: int = 0


class ClickstreamGenerator:
    def __init__(
        self,
        seed: int = 7,
        start: dt.datetime | None = None,
        events_per_second: float = 20.0,
        faults: FaultRates = FaultRates(),
        users: int = 500,
        concurrent_sessions: int = 25,
        late_by: tuple[float, float] = (15 * 60, 45 * 60),
    ) -> None:
        self.rng = random.Random(seed)
        self.clock = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.mean_gap = 1.0 / events_per_second
        self.faults = faults
        self.users = [f"u{n:05d}" for n in range(users)]
        self.user_country = {u: self.rng.choice(list(COUNTRIES)) for u in self.users}
        self.products = {
            f"{cat[:3]}-{n:03d}": (cat, Decimal(self.rng.uniform(*rng_)).quantize(Decimal("0.01")))
            for cat, rng_ in CATEGORIES.items()
            for n in range(40)
        }
        self.product_ids = list(self.products)
        self.zones = {c: dt.timezone(dt.timedelta(hours=v[3])) for c, v in COUNTRIES.items()}
        self.concurrent = concurrent_sessions
        self.late_by = late_by
        self.sessions: list[_Session] = []
        self.history: list[SimEvent] = []  # recent valid events, for duplicates
        self._serial = 0

    # -- public -----------------------------------------------------------------------------------------

    def events(self) -> Iterator[SimEvent]:
        while True:
            yield self.next_event()

    def next_event(self) -> SimEvent:
        self.clock += dt.timedelta(seconds=self.rng.expovariate(1.0 / self.mean_gap))
        f = self.faults
        r = self.rng.random()
        for kind, rate in (
            ("exact_duplicate", f.exact_duplicate),
            ("conflicting_duplicate", f.conflicting_duplicate),
            ("malformed", f.malformed),
            ("late", f.late),
            ("out_of_order", f.out_of_order),
        ):
            if r < rate:
                return self._fault(kind)
            r -= rate
        return self._valid("valid", self.clock)

    # -- normal events ----------------------------------------------------------------------------------

    def _valid(self, kind: str, at: dt.datetime) -> SimEvent:
        payload = self._payload(at)
        event = self._encode(kind, payload)
        self.history.append(event)
        if len(self.history) > 2000:
            del self.history[:1000]
        return event

    def _payload(self, at: dt.datetime) -> dict:
        s = self._session()
        options = TRANSITIONS[s.last] if s.last else [("page_view", 1)]
        if s.last == "checkout" and not s.cart:
            options = [("page_view", 1)]
        nxt = self.rng.choices([o for o, _ in options], [w for _, w in options])[0]
        if nxt is None or s.sent > 40:
            self.sessions.remove(s)
            s = self._session()
            nxt = "page_view"
        s.last, s.sent = nxt, s.sent + 1
        currency, rate, decimals, _ = COUNTRIES[s.country]
        local = at.astimezone(self.zones[s.country])
        p: dict = {
            "event_id": self._id(),
            "event_type": nxt,
            "event_time": local.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user_id": s.user_id,
            "session_id": s.session_id,
            "page_url": f"/{nxt.replace('_', '-')}/{self.rng.randrange(1000)}",
            "referrer": s.referrer,
            "device": s.device,
            "country": s.country,
        }
        if nxt == "search":
            p["search_query"] = self.rng.choice(["lamp", "novel", "usb cable", "jacket", "lego", "coffee"])
        if nxt in ("product_view", "add_to_cart", "remove_from_cart"):
            product = self.rng.choice(self.product_ids)
            if nxt == "remove_from_cart" and s.cart:
                product = s.cart.pop(self.rng.randrange(len(s.cart)))[0]
            p["product_id"] = product
            p["category"] = self.products[product][0]
        if nxt == "add_to_cart":
            qty = self.rng.choice([1, 1, 1, 2, 3])
            s.cart.append((p["product_id"], qty))
            p["price"] = self._price(p["product_id"], rate, decimals)
            p["quantity"] = qty
            p["currency"] = currency
        if nxt == "purchase":
            product, qty = s.cart.pop(0)
            p.update(
                product_id=product, category=self.products[product][0],
                price=self._price(product, rate, decimals), quantity=qty, currency=currency,
            )  # fmt: skip
        return p

    def _session(self) -> _Session:
        if len(self.sessions) < self.concurrent or not self.sessions:
            user = self.rng.choice(self.users)
            self.sessions.append(
                _Session(
                    session_id=f"s-{self._id()}", user_id=user, country=self.user_country[user],
                    device=self.rng.choice(DEVICES), referrer=self.rng.choice(REFERRERS),
                )  # fmt: skip
            )
        return self.rng.choice(self.sessions)

    def _price(self, product: str, rate: Decimal, decimals: int) -> float | int:
        value = (self.products[product][1] * rate).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
        return int(value) if decimals == 0 else float(value)

    # -- faults -----------------------------------------------------------------------------------------

    def _fault(self, kind: str) -> SimEvent:
        if kind == "late":
            return self._valid("late", self.clock - dt.timedelta(seconds=self.rng.uniform(*self.late_by)))
        if kind == "out_of_order":
            return self._valid("out_of_order", self.clock - dt.timedelta(seconds=self.rng.uniform(5, 120)))
        if kind == "malformed":
            return self._malformed(self.rng.choice(MALFORMED))
        if not self.history:
            return self._valid("valid", self.clock)
        original = self.rng.choice(self.history)
        if kind == "exact_duplicate":
            return SimEvent("exact_duplicate", original.key, original.value, (), original.headers)
        changed = dict(original.payload() or {})
        changed["page_url"] = f"{changed.get('page_url', '/')}?v={self.rng.randrange(1, 10**6)}"
        return self._encode("conflicting_duplicate", changed, ("duplicate_conflict",))

    def _malformed(self, kind: str) -> SimEvent:
        p = self._payload(self.clock)
        if kind == "invalid_json":
            variant = self.rng.randrange(3)
            value = [b"", json.dumps(p).encode()[:-7], b"\xff\xfe" + json.dumps(p).encode()][variant]
            return SimEvent(kind, p["user_id"].encode(), value, ("invalid_json",), self._headers())
        if kind == "wrong_type":
            p["user_id"] = 10_000 + self.rng.randrange(1000)
            return self._encode(kind, p, ("bad_type:user_id",))
        if kind == "missing_field":
            del p["session_id"]
            return self._encode(kind, p, ("missing:session_id",))
        if kind == "out_of_range":
            p.update(event_type="add_to_cart", product_id=p.get("product_id") or "boo-001", price=-5.0, quantity=1)
            return self._encode(kind, p, ("out_of_range:price",))
        p["event_type"] = "refund"
        return self._encode(kind, p, ("not_in_set:event_type",))

    # -- encoding ---------------------------------------------------------------------------------------

    def _encode(self, kind: str, payload: dict, reasons: tuple[str, ...] = ()) -> SimEvent:
        key = str(payload.get("user_id", "")).encode()
        value = json.dumps(payload, separators=(",", ":")).encode()
        return SimEvent(kind, key, value, reasons, self._headers())

    def _headers(self) -> tuple[tuple[str, bytes], ...]:
        return HEADERS

    def _id(self) -> str:
        self._serial += 1
        return f"{self.rng.getrandbits(48):012x}{self._serial:08x}"
