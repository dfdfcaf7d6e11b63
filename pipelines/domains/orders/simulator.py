"""Synthetic change data capture of the shop's orders table, in the shapes the real Debezium connector writes.

Deterministic for a seed, in simulated time. A snapshot (`r`) of `orders` rows sharing one `source.lsn`, then
inserts (`c`), amount updates (`u`) and deletes (`d`) with growing LSNs. As the real connector writes a table
with the default replica identity (tests/integration/test_local_cdc.py): an update has no `before`, a delete's
`before` has the key and placeholders ('', "AA==", the epoch), a tombstone follows each delete, `amount` is
base64 unscaled bytes (numeric(12,2)) and `ordered_at` ISO text with microseconds. Customers are the
customers simulator's ids (u00000...). Injected at rates: exact re-sends, and malformed events.
"""

from __future__ import annotations

import base64
import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal

from pipelines.domains.customers.simulator import CdcFaults, debezium_envelope, iso_micros
from pipelines.simulators.base import TOMBSTONE, RecentEvents, SimEvent, encode

CURRENCIES = ("USD", "EUR", "GBP")
MALFORMED = ("amount_as_number", "unknown_op", "missing_order_id")
PLACEHOLDERS = {"customer_id": "", "amount": "AA==", "currency": "", "ordered_at": "1970-01-01T00:00:00.000000Z"}


def unscaled_base64(amount: Decimal, scale: int = 2) -> str:
    """A numeric as Debezium's decimal.handling.mode=precise writes it: unscaled, big-endian two's complement."""
    n = int(amount.scaleb(scale))
    return base64.b64encode(n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)).decode()


class OrdersGenerator:
    def __init__(
        self,
        seed: int = 37,
        start: dt.datetime | None = None,
        orders: int = 200,
        customers: int = 500,
        changes_per_hour: float = 600.0,
        faults: CdcFaults = CdcFaults(),  # out_of_order does not apply to orders
    ) -> None:
        self.rng = random.Random(seed)
        self.clock_ms = int((start or dt.datetime.now(dt.UTC)).timestamp() * 1000)
        self.mean_gap_ms = 3_600_000 / changes_per_hour
        self.faults, self.snapshot_size, self.customers = faults, orders, customers
        self.rows: dict[int, dict] = {}  # the source table now
        self.lsn = 5000
        self.generated = 0
        self.recent = RecentEvents(self.rng, keep=300)

    def events(self) -> Iterator[SimEvent]:
        while True:
            r = self.rng.random()
            f = self.faults
            if r < f.exact_duplicate and self.recent.events:
                yield self.recent.resend()
            elif r < f.exact_duplicate + f.malformed:
                yield self._malformed()
            else:
                envelope = self._next_envelope()
                order_id = (envelope["after"] or envelope["before"])["order_id"]
                yield self.recent.add(encode("valid", str(order_id), envelope))
                if envelope["op"] == "d":
                    yield SimEvent(TOMBSTONE, str(order_id).encode(), None)

    def _next_envelope(self) -> dict:
        if self.generated == 0 or self.generated >= self.snapshot_size:  # a snapshot's rows share one lsn
            self.lsn += self.rng.randint(1, 5)
        self.generated += 1
        if self.generated <= self.snapshot_size:
            return self._envelope("r", None, self._new_row())
        self.clock_ms += int(self.rng.expovariate(1 / self.mean_gap_ms)) + 1
        r = self.rng.random()
        live = sorted(self.rows)
        if r < 0.7 or not live:
            return self._envelope("c", None, self._new_row())
        order_id = self.rng.choice(live)
        if r < 0.9:
            after = dict(self.rows[order_id], amount=unscaled_base64(self._amount()))
            self.rows[order_id] = after
            return self._envelope("u", None, after)
        del self.rows[order_id]
        return self._envelope("d", dict(PLACEHOLDERS, order_id=order_id), None)

    def _amount(self) -> Decimal:
        return Decimal(self.rng.randint(100, 50_000)).scaleb(-2)

    def _new_row(self) -> dict:
        order_id = max(self.rows, default=0) + 1
        row = {
            "order_id": order_id,
            "customer_id": f"u{self.rng.randrange(self.customers):05d}",
            "amount": unscaled_base64(self._amount()),
            "currency": self.rng.choice(CURRENCIES),
            "ordered_at": iso_micros(self.clock_ms),
        }
        self.rows[order_id] = row
        return row

    def _envelope(self, op: str, before: dict | None, after: dict | None) -> dict:
        return debezium_envelope("orders", op, before, after, self.clock_ms, self.lsn)

    def _malformed(self) -> SimEvent:
        row = {"order_id": 10**9 + self.rng.randrange(10**6), "customer_id": "u00001",
               "amount": unscaled_base64(Decimal("10.00")), "currency": "USD", "ordered_at": iso_micros(self.clock_ms)}  # fmt: skip
        envelope = self._envelope("c", None, row)
        envelope["source"] = dict(envelope["source"], lsn=self.lsn + self.rng.randint(10**9, 2 * 10**9))
        kind = self.rng.choice(MALFORMED)
        if kind == "amount_as_number":  # what decimal.handling.mode=double would send to this contract
            row["amount"] = 10.0
            return encode(kind, str(row["order_id"]), envelope, ("bad_type:amount",))
        if kind == "unknown_op":
            envelope["op"] = "x"
            return encode(kind, str(row["order_id"]), envelope, ("not_in_set:op",))
        del row["order_id"]
        return encode(kind, "0", envelope, ("missing:order_id",))
