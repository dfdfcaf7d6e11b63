"""Clickstream end to end on the real broker and real Delta tables, with `--once` runs.

A seeded simulator sends a known mix (valid, exact and conflicting duplicates, every malformed kind,
out-of-order). After one run, each table holds exactly what the mix implies, and gold equals an
independent computation from the events sent. A second wave adds late events (older than the watermark)
and re-sends of first-wave events: late ones reach silver but not gold, and re-sends are caught against
silver however long after the original they come.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.simulators.base import SimEvent
from tests.support import pipeline, reaching_silver, run_once, send, table

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
FAULTS = FaultRates(exact_duplicate=0.04, conflicting_duplicate=0.03, malformed=0.1, out_of_order=0.05)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)


def minute(ts: dt.datetime) -> dt.datetime:
    return ts.replace(second=0, microsecond=0)


def expected_revenue(payloads):
    out = defaultdict(lambda: [0, 0, Decimal(0)])
    for p in payloads:
        if p["event_type"] == "purchase":
            row = out[(minute(utc(p["event_time"])), p["category"], p["currency"])]
            row[0] += 1
            row[1] += p["quantity"]
            row[2] += Decimal(str(p["price"])) * p["quantity"]
    return {k: (o, u, r.quantize(Decimal("0.0001"))) for k, (o, u, r) in out.items()}


def expected_activity(payloads):
    events, users = Counter(), defaultdict(set)
    for p in payloads:
        k = (minute(utc(p["event_time"])), p["event_type"])
        events[k] += 1
        users[k].add(p["user_id"])
    return {k: (events[k], len(users[k])) for k in events}


def expected_sessions(payloads, gap=dt.timedelta(minutes=30)):
    """Sessions computed here, independently: sort each session_id's events, split at gaps >= 30 min."""
    by_id = defaultdict(list)
    for p in payloads:
        by_id[p["session_id"]].append(p)
    out = {}
    for sid, ps in by_id.items():
        ps.sort(key=lambda p: utc(p["event_time"]))
        group = [ps[0]]
        for p in ps[1:] + [None]:
            if p is not None and utc(p["event_time"]) - utc(group[-1]["event_time"]) < gap:
                group.append(p)
                continue
            buys = [g for g in group if g["event_type"] == "purchase"]
            revenue = sum((Decimal(str(g["price"])) * g["quantity"] for g in buys), Decimal(0))
            out[(sid, utc(group[0]["event_time"]))] = (
                utc(group[-1]["event_time"]), len(group),
                sum(g["event_type"] == "page_view" for g in group), len(buys), revenue.quantize(Decimal("0.0001")),
            )  # fmt: skip
            group = [p] if p is not None else []
    return out


def gold_revenue(spark, p):
    rows = table(spark, p, "clickstream_revenue_per_minute").collect()
    return {(r.window_start, r.category, r.currency): (r.orders, r.units, r.revenue) for r in rows}


def gold_activity(spark, p):
    rows = table(spark, p, "clickstream_activity_per_minute").collect()
    return {(r.window_start, r.event_type): (r.events, r.users) for r in rows}


def gold_sessions(spark, p):
    rows = table(spark, p, "clickstream_sessions").collect()
    return {
        (r.session_id, r.session_start): (r.session_end, r.events, r.page_views, r.purchases, r.revenue) for r in rows
    }


def test_known_mix_lands_exactly_and_late_events_stay_out_of_gold(spark, test_settings):
    gen = ClickstreamGenerator(seed=11, start=START, events_per_second=5, faults=FAULTS)
    wave1 = [gen.next_event() for _ in range(1500)]
    sent = Counter(e.kind for e in wave1)
    assert all(sent[k] > 0 for k in ("exact_duplicate", "conflicting_duplicate", "invalid_json", "wrong_type",
                                     "missing_field", "out_of_range", "not_in_set", "out_of_order"))  # fmt: skip
    tally = send(test_settings, wave1)

    result = run_once(spark, test_settings, ["clickstream"])
    p = pipeline(test_settings, "clickstream")
    expected = tally.expected()
    assert table(spark, p, "clickstream_events_raw").count() == 1500, "bronze holds every record sent"
    assert table(spark, p, "clickstream_events").count() == expected["silver"], (
        f"silver = valid + out-of-order events = {expected['silver']}, duplicates and rejects excluded"
    )
    quarantine = table(spark, p, "clickstream_events_quarantine")
    assert quarantine.count() == expected["quarantine"]
    reasons = Counter(r for row in quarantine.select("reasons").collect() for r in row.reasons)
    assert reasons == tally.reasons, "each malformed kind is quarantined with exactly its reason"
    audit = table(spark, p, "clickstream_silver_batches").groupBy().sum(
        "bronze_records", "silver_records", "quarantined_records", "exact_duplicates"
    ).first()
    assert tuple(audit) == (1500, expected["silver"], expected["quarantine"], expected["exact_duplicates"]), (
        "every bronze record is accounted for: silver + quarantine + exact duplicates = bronze"
    )
    assert result.queries["clickstream.silver"].input_rows == 1500

    payloads = reaching_silver(wave1)
    assert gold_revenue(spark, p) == expected_revenue(payloads)
    assert gold_activity(spark, p) == expected_activity(payloads)
    assert gold_sessions(spark, p) == expected_sessions(payloads)

    # Wave 2: on-time events, late events, and re-sends (exact and conflicting) of wave-1 events.
    late_gen = ClickstreamGenerator(seed=12, start=gen.clock, events_per_second=5, faults=FaultRates(late=0.2))
    late_gen.sessions = []  # fresh sessions: late events do not extend wave-1 sessions
    wave2 = [late_gen.next_event() for _ in range(300)]
    originals = [e for e in wave1 if e.kind == "valid"][:20]
    resent = [SimEvent("exact_duplicate", e.key, e.value) for e in originals[:10]]
    conflicting = []
    for e in originals[10:20]:
        changed = dict(e.payload(), page_url="/changed")
        conflicting.append(SimEvent("conflicting_duplicate", e.key, json.dumps(changed).encode(), ("duplicate_conflict",)))
    tally2 = send(test_settings, wave2 + resent + conflicting)
    late = tally2.delivered["late"]
    assert late > 20

    result2 = run_once(spark, test_settings, ["clickstream"])
    silver_now = table(spark, p, "clickstream_events")
    assert silver_now.count() == expected["silver"] + tally2.expected()["silver"], "late events do reach silver"
    assert silver_now.groupBy("event_id").count().where("count > 1").count() == 0, "event_id stays unique"
    assert table(spark, p, "clickstream_events_quarantine").where(
        "array_contains(reasons, 'duplicate_conflict')"
    ).count() == tally.reasons["duplicate_conflict"] + 10, "conflicting re-sends of old events are caught"
    metrics = result2.queries
    assert metrics["clickstream.gold.clickstream_sessions"].late_rows_dropped == late, (
        f"the per-event state operator counts every late event left out of gold: {result2.to_dict()}"
    )
    activity_dropped = metrics["clickstream.gold.clickstream_activity_per_minute"].late_rows_dropped
    assert 0 < activity_dropped <= late, "windowed aggregates count late rows after partial aggregation"
    on_time = payloads + reaching_silver([e for e in wave2 if e.kind != "late"])
    assert gold_activity(spark, p) == expected_activity(on_time), "gold leaves late events out"
    assert gold_revenue(spark, p) == expected_revenue(on_time)
    assert gold_sessions(spark, p) == expected_sessions(on_time)
