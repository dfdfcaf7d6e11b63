"""The demo's live source: random transactions on the local shop database (`lakepipe cdc up`), as the shop's
application would make them, which the real Debezium connector streams to Kafka.

Each wave runs N transactions in one psql session: sign-ups (sometimes with a first order in the same
transaction), customer updates (tier, email, country; sometimes twice in one transaction), orders placed,
amended and cancelled, customers deleted (their orders go with them: ON DELETE CASCADE) and deleted then
inserted again under the same id. It ends with a transaction touching both tables and waits until the
connector has streamed it, so every change of the wave is in Kafka when it returns.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field

from pipelines.model.config import Settings
from pipelines.platform import local_cdc

TIERS = ("bronze", "silver", "gold", "platinum")
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "CA")
CURRENCIES = ("USD", "EUR", "GBP")
KINDS = {"sign_up": 15, "update": 25, "update_twice": 5, "order": 30, "amend": 10, "cancel": 7, "delete": 4,
         "delete_and_insert_again": 4}  # fmt: skip


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class ShopChanges:
    settings: Settings
    seed: int
    rng: random.Random = field(init=False)
    made: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def count(self, table: str) -> int:
        return int(local_cdc.sql(self.settings, f"SELECT count(*) FROM {table}").strip())

    def wave(self, n: int) -> str:
        """Commit `n` random transactions and wait until the connector has streamed them; one line."""
        committed, mark = self.commit(n)
        waited = local_cdc.wait_streamed(self.settings, mark)
        return f"{committed}; streamed by Debezium {waited:.1f}s later"

    def commit(self, n: int) -> tuple[str, int]:
        """Commit `n` random transactions, then one more that changes both tables: one line, and the log
        position before that last one (the connector has streamed all once it has streamed beyond it)."""
        customers = local_cdc.sql(self.settings, "SELECT customer_id FROM customers ORDER BY 1").split()
        orders = [line.split("|") for line in local_cdc.sql(self.settings, "SELECT order_id, customer_id FROM orders").split()]
        state = _State(customers, {int(o): c for o, c in orders}, self._next_id())
        kinds = self.rng.choices(list(KINDS), list(KINDS.values()), k=n)
        script = [self._transaction(kind, state) for kind in kinds]
        started = time.monotonic()
        local_cdc.sql(self.settings, "\n".join(script))
        mark = local_cdc.commit_marker(self.settings, self._transaction("order", state, touch_customer=True))
        self.made.update(kinds)
        kinds_text = ", ".join(f"{k} {v}" for k, v in sorted(Counter(kinds).items()))
        return f"committed {n + 1} transactions in {time.monotonic() - started:.1f}s ({kinds_text})", mark

    def _next_id(self) -> int:
        top = local_cdc.sql(self.settings, "SELECT max(customer_id) FROM customers").strip()
        return int(top[1:]) + 1 if top else 1

    def _transaction(self, kind: str, s: _State, touch_customer: bool = False) -> str:
        rng = self.rng
        if kind == "sign_up" or not s.customers:
            cid = f"u{s.next_id:05d}"
            s.next_id += 1
            s.customers.append(cid)
            statements = [self._insert_customer(cid)]
            if rng.random() < 0.5:
                statements.append(self._insert_order(cid))
            return _tx(statements)
        cid = rng.choice(s.customers)
        if kind in ("update", "update_twice"):
            return _tx([self._update_customer(cid) for _ in range(1 if kind == "update" else 2)])
        if kind == "order":
            statements = [self._insert_order(cid) for _ in range(rng.randint(1, 3))]
            if touch_customer:
                statements.append(self._update_customer(cid))
            return _tx(statements)
        if kind in ("amend", "cancel") and s.orders:
            order_id = rng.choice(sorted(s.orders))
            if kind == "cancel":
                del s.orders[order_id]
                return _tx([f"DELETE FROM orders WHERE order_id = {order_id};"])
            return _tx([f"UPDATE orders SET amount = {self._amount()} WHERE order_id = {order_id};"])
        if kind in ("delete", "delete_and_insert_again"):
            s.orders = {o: c for o, c in s.orders.items() if c != cid}  # ON DELETE CASCADE
            statements = [f"DELETE FROM customers WHERE customer_id = {quote(cid)};"]
            if kind == "delete":
                s.customers.remove(cid)
            else:
                statements.append(self._insert_customer(cid))
            return _tx(statements)
        return _tx([self._update_customer(cid)])  # amend or cancel with no order yet

    def _insert_customer(self, cid: str) -> str:
        n = int(cid[1:])
        return (f"INSERT INTO customers (customer_id, email, full_name, country, tier) VALUES ({quote(cid)}, "
                f"'customer{n}.{self.rng.randrange(1000)}@example.com', 'Customer {n}', "
                f"{quote(self.rng.choice(COUNTRIES))}, {quote(self.rng.choice(TIERS))});")  # fmt: skip

    def _update_customer(self, cid: str) -> str:
        what = self.rng.choice(("tier", "tier", "email", "country"))
        value = {"tier": self.rng.choice(TIERS), "country": self.rng.choice(COUNTRIES),
                 "email": f"{cid}.{self.rng.randrange(10**6)}@example.org"}[what]  # fmt: skip
        return f"UPDATE customers SET {what} = {quote(value)}, updated_at = now() WHERE customer_id = {quote(cid)};"

    def _insert_order(self, cid: str) -> str:
        return (f"INSERT INTO orders (customer_id, amount, currency) VALUES ({quote(cid)}, {self._amount()}, "
                f"{quote(self.rng.choice(CURRENCIES))});")  # fmt: skip

    def _amount(self) -> str:
        return f"{self.rng.randint(100, 50_000) / 100:.2f}"


@dataclass
class _State:
    customers: list[str]
    orders: dict[int, str]
    next_id: int


def _tx(statements: list[str]) -> str:
    return "BEGIN;\n" + "\n".join(statements) + "\nCOMMIT;"
