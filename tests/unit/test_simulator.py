"""The clickstream simulator: deterministic per seed, faults at their rates, replayable, contract-true."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.engine.validation import parse_records
from pipelines.simulators.base import FileSink, ReplaySource, Tally, publish

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
FAULTS = FaultRates(exact_duplicate=0.05, conflicting_duplicate=0.05, malformed=0.1, late=0.05, out_of_order=0.05)


def take(gen, n):
    return [gen.next_event() for _ in range(n)]


def test_same_seed_same_events_other_seed_other_events():
    a = take(ClickstreamGenerator(seed=1, start=START, faults=FAULTS), 300)
    b = take(ClickstreamGenerator(seed=1, start=START, faults=FAULTS), 300)
    c = take(ClickstreamGenerator(seed=2, start=START, faults=FAULTS), 300)
    assert a == b
    assert a != c


def test_fault_kinds_come_at_their_rates():
    kinds = Counter(e.kind for e in take(ClickstreamGenerator(seed=5, start=START, faults=FAULTS), 20_000))
    malformed = sum(kinds[k] for k in ("invalid_json", "wrong_type", "missing_field", "out_of_range", "not_in_set"))
    assert malformed / 20_000 == pytest.approx(0.1, abs=0.01)
    for kind in ("exact_duplicate", "conflicting_duplicate", "late", "out_of_order"):
        assert kinds[kind] / 20_000 == pytest.approx(0.05, abs=0.01), kind


def test_sessions_look_like_shopping():
    events = [e.payload() for e in take(ClickstreamGenerator(seed=9, start=START), 5000)]
    types = Counter(p["event_type"] for p in events)
    assert types["page_view"] > types["purchase"] > 0
    assert all(p["quantity"] >= 1 and p["currency"] for p in events if p["event_type"] == "purchase")
    assert len({p["currency"] for p in events if "currency" in p}) >= 4, "several currencies"
    times = [dt.datetime.fromisoformat(p["event_time"].replace("Z", "+00:00")) for p in events]
    assert times == sorted(times), "without faults, event time only moves forward"


def test_late_events_are_older_than_the_watermark_and_out_of_order_ones_are_not():
    gen = ClickstreamGenerator(seed=4, start=START, faults=FaultRates(late=0.3, out_of_order=0.3))
    for _ in range(1000):
        e = gen.next_event()
        lag = gen.clock - dt.datetime.fromisoformat(e.payload()["event_time"].replace("Z", "+00:00"))
        if e.kind == "late":
            assert lag > dt.timedelta(minutes=10)
        elif e.kind == "out_of_order":
            assert dt.timedelta(0) < lag <= dt.timedelta(minutes=2, seconds=5)


def test_file_sink_and_replay_round_trip(tmp_path):
    events = take(ClickstreamGenerator(seed=3, start=START, faults=FAULTS), 500)
    tally = publish(iter(events), FileSink(tmp_path / "events.jsonl", Tally()))
    assert sum(tally.delivered.values()) == 500
    assert list(ReplaySource(tmp_path / "events.jsonl").events()) == events


def test_publish_stops_at_count_and_at_seconds_and_keeps_the_rate(tmp_path):
    gen = ClickstreamGenerator(seed=3, start=START)
    assert sum(publish(gen.events(), FileSink(tmp_path / "a", Tally()), count=123).sent.values()) == 123
    began = time.monotonic()
    tally = publish(gen.events(), FileSink(tmp_path / "b", Tally()), seconds=1.0, rate=200)
    elapsed = time.monotonic() - began
    assert 0.9 <= elapsed < 2.0
    assert 150 <= sum(tally.sent.values()) <= 205, "about 200 events in one second at --rate 200"


def test_every_event_gets_exactly_the_outcome_its_kind_promises(spark, clickstream_contract):
    events = take(ClickstreamGenerator(seed=8, start=START, faults=FAULTS), 2000)
    rows = [(bytearray(e.value) if e.value is not None else None, "t", 0, i) for i, e in enumerate(events)]
    parsed = parse_records(spark.createDataFrame(rows, "value binary, topic string, partition int, offset long"),
                           clickstream_contract).orderBy("offset").collect()  # fmt: skip
    for e, row in zip(events, parsed, strict=True):
        if e.kind in ("exact_duplicate", "conflicting_duplicate"):
            assert row.reasons == [], "re-sends are valid records; only dedup tells them apart"
        else:
            assert tuple(row.reasons) == e.reasons, (e.kind, e.value[:200] if e.value else e.value)


@pytest.mark.parametrize("name", ["iot", "payments", "customers", "orders"])
def test_domain_simulators_are_deterministic_and_resend_exactly(name):
    import itertools

    from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
    from pipelines.domains.iot.simulator import IotFaults, IotGenerator
    from pipelines.domains.orders.simulator import OrdersGenerator
    from pipelines.domains.payments.simulator import PaymentFaults, PaymentsGenerator

    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    make = {
        "iot": lambda: IotGenerator(seed=1, start=start, devices=20, faults=IotFaults(exact_duplicate=0.1, malformed=0.05)),
        "payments": lambda: PaymentsGenerator(seed=1, start=start, faults=PaymentFaults(exact_duplicate=0.1, malformed=0.05, fraud=0.05)),
        "customers": lambda: CdcGenerator(seed=1, start=start, customers=20, faults=CdcFaults(exact_duplicate=0.1, malformed=0.05)),
        "orders": lambda: OrdersGenerator(seed=1, start=start, orders=20, faults=CdcFaults(exact_duplicate=0.1, malformed=0.05)),
    }[name]  # fmt: skip
    first, second = (list(itertools.islice(make().events(), 600)) for _ in range(2))
    assert first == second, "same seed, same events"
    sent = {e.value for e in first if e.kind != "exact_duplicate"}
    dups = [e for e in first if e.kind == "exact_duplicate"]
    assert dups and all(d.value in sent for d in dups), "a duplicate re-sends an event sent before"
    rejected = [e for e in first if e.reasons]
    assert rejected and all(e.kind not in ("valid", "exact_duplicate") for e in rejected)
