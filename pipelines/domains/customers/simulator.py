"""Synthetic change data capture of a customers table, in the shapes the real Debezium connector writes.

Deterministic for a seed, in simulated time. First a snapshot (`r`) of `customers` rows (ids u00000...,
the same ids the clickstream simulator's users have) that all carry one `source.lsn`, as a real snapshot
does; then inserts (`c`), updates (`u`: email, tier or country) and deletes (`d`), each with a growing
`source.lsn`, each delete followed by a tombstone (same key, null value). Timestamps are ISO-8601 text with
microseconds, `source.ts_ms` is the commit time (what `tests/integration/test_local_cdc.py` sees the real
connector write). Injected at rates:
exact re-sends, changes held back and sent after later ones (out of order), and malformed events.
The ground truth is the valid changes sent, applied in lsn order (a change still held back when a run stops
was never sent, and is not part of it).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from pipelines.simulators.base import TOMBSTONE, RecentEvents, SimEvent, encode

TIERS = ("bronze", "silver", "gold", "platinum")
COUNTRIES = ("US", "DE", "FR", "GB", "JP", "CA")
FIRST = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Lee")
MALFORMED = ("invalid_json", "unknown_op", "missing_lsn", "unknown_tier")


def iso_micros(ms: int) -> str:
    """An epoch-millisecond time as Debezium writes a timestamptz column: ISO-8601, microseconds, Z."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def debezium_envelope(table: str, op: str, before: dict | None, after: dict | None, commit_ms: int, lsn: int) -> dict:
    """A change of `public.<table>` in the shape the PostgreSQL connector writes (JsonConverter, no schema)."""
    return {
        "before": before,
        "after": after,
        "source": {"version": "3.6.1.Final", "connector": "postgresql", "name": "shop", "ts_ms": commit_ms,
                   "snapshot": "true" if op == "r" else "false", "db": "shop", "schema": "public",
                   "table": table, "txId": lsn // 7, "lsn": lsn},
        "transaction": None,
        "op": op,
        "ts_ms": commit_ms + 150,  # when the connector read it
    }


@dataclass(frozen=True)
class CdcFaults:
    exact_duplicate: float = 0.0
    out_of_order: float = 0.0
    malformed: float = 0.0

    def __post_init__(self) -> None:
        if any(r < 0 for r in vars(self).values()) or sum(vars(self).values()) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")


class CdcGenerator:
    def __init__(
        self,
        seed: int = 31,
        start: dt.datetime | None = None,
        customers: int = 500,
        changes_per_hour: float = 600.0,
        faults: CdcFaults = CdcFaults(),
        delete_share: float = 0.03,
        insert_share: float = 0.1,
    ) -> None:
        self.rng = random.Random(seed)
        self.clock_ms = int((start or dt.datetime.now(dt.UTC)).timestamp() * 1000)
        self.mean_gap_ms = 3_600_000 / changes_per_hour
        self.faults = faults
        self.delete_share, self.insert_share = delete_share, insert_share
        self.snapshot_size = customers
        self.rows: dict[str, dict] = {}  # the source table now
        self.next_id = customers
        self.lsn = 1000
        self.generated = 0
        self.recent = RecentEvents(self.rng, keep=300)
        self.tombstones: dict[int, SimEvent] = {}  # id() of a delete event -> its tombstone, sent right after it
        self.held: list[tuple[int, SimEvent]] = []  # (send after this many more events, event)

    def events(self) -> Iterator[SimEvent]:
        while True:
            event = self.next_event()
            yield event
            if (tombstone := self.tombstones.pop(id(event), None)) is not None:
                yield tombstone

    def next_event(self) -> SimEvent:
        for i, (wait, event) in enumerate(self.held):
            if wait <= 0:
                del self.held[i]
                return event
        self.held = [(wait - 1, e) for wait, e in self.held]
        f = self.faults
        r = self.rng.random()
        if r < f.exact_duplicate and self.recent.events:
            return self.recent.resend()
        r -= f.exact_duplicate
        if r < f.malformed:
            return self._malformed()
        r -= f.malformed
        if r < f.out_of_order:
            self.held.append((self.rng.randint(2, 15), self._change("out_of_order")))
            return self._change("valid")
        return self._change("valid")

    # -- changes --------------------------------------------------------------------------------------------

    def _change(self, kind: str) -> SimEvent:
        envelope = self._next_envelope()
        self.generated += 1
        key = (envelope["after"] or envelope["before"])["customer_id"]
        event = self.recent.add(encode(kind, key, envelope))
        if envelope["op"] == "d":
            self.tombstones[id(event)] = SimEvent(TOMBSTONE, event.key, None)
        return event

    def _next_envelope(self) -> dict:
        if self.generated == 0 or self.generated >= self.snapshot_size:  # a snapshot's rows share one lsn
            self.lsn += self.rng.randint(1, 5)
        if self.generated < self.snapshot_size:  # the initial snapshot, all at the start time
            cid = f"u{self.generated:05d}"
            return self._envelope("r", None, self._new_row(cid))
        self.clock_ms += int(self.rng.expovariate(1 / self.mean_gap_ms)) + 1
        r = self.rng.random()
        live = sorted(self.rows)
        if r < self.insert_share or not live:
            cid = f"u{self.next_id:05d}"
            self.next_id += 1
            return self._envelope("c", None, self._new_row(cid))
        cid = self.rng.choice(live)
        before = self.rows[cid]
        if r < self.insert_share + self.delete_share:
            del self.rows[cid]
            return self._envelope("d", before, None)
        after = dict(before, updated_at=iso_micros(self.clock_ms))
        what = self.rng.choice(("email", "tier", "tier", "country"))
        if what == "email":
            after["email"] = f"{cid}.{self.lsn}@example.org"
        elif what == "tier":
            after["tier"] = self.rng.choice([t for t in TIERS if t != before["tier"]])
        else:
            after["country"] = self.rng.choice([c for c in COUNTRIES if c != before["country"]])
        self.rows[cid] = after
        return self._envelope("u", before, after)

    def _new_row(self, cid: str) -> dict:
        row = {
            "customer_id": cid,
            "email": f"{cid}@example.com",
            "full_name": f"{self.rng.choice(FIRST)} {self.rng.choice(LAST)}",
            "tier": self.rng.choices(TIERS, (50, 30, 15, 5))[0],
            "country": self.rng.choice(COUNTRIES),
            "created_at": iso_micros(self.clock_ms),
            "updated_at": iso_micros(self.clock_ms),
        }
        self.rows[cid] = row
        return row

    def _envelope(self, op: str, before: dict | None, after: dict | None) -> dict:
        return debezium_envelope("customers", op, before, after, self.clock_ms, self.lsn)

    def _malformed(self) -> SimEvent:
        cid = self.rng.choice(sorted(self.rows)) if self.rows else "u00000"
        row = dict(self.rows.get(cid) or self._new_row(cid))
        envelope = self._envelope("u", row, row)
        envelope["source"] = dict(envelope["source"], lsn=self.lsn + self.rng.randint(10**9, 2 * 10**9))
        kind = self.rng.choice(MALFORMED)
        if kind == "invalid_json":
            return SimEvent(kind, cid.encode(), json.dumps(envelope).encode()[:-4], ("invalid_json",))
        if kind == "unknown_op":
            envelope["op"] = "x"
            return encode(kind, cid, envelope, ("not_in_set:op",))
        if kind == "missing_lsn":
            del envelope["source"]["lsn"]
            return encode(kind, cid, envelope, ("missing:lsn",))
        envelope["after"] = dict(row, tier="diamond")
        return encode(kind, cid, envelope, ("not_in_set:tier",))
