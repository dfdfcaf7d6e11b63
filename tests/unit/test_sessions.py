"""Session merging (pure): gaps split sessions, late bridging events merge them, totals add up."""

from __future__ import annotations

from decimal import Decimal

from pipelines.gold.sessions import Session, event_session, merge_sessions

MIN = 60_000_000  # microseconds
GAP = 30 * MIN


def ev(minute, kind="page_view", price=None, qty=None):
    return event_session(minute * MIN, "u1", kind, Decimal(price) if price else None, qty)


def test_events_closer_than_the_gap_form_one_session():
    (s,) = merge_sessions([ev(0), ev(10), ev(39, "purchase", "2.50", 2)], GAP)
    assert (s.start_us, s.end_us, s.events, s.page_views, s.purchases) == (0, 39 * MIN, 3, 2, 1)
    assert Decimal(s.revenue) == Decimal("5.00")


def test_a_gap_of_thirty_minutes_or_more_starts_a_new_session():
    sessions = merge_sessions([ev(0), ev(30), ev(59), ev(90)], GAP)
    assert [(s.start_us // MIN, s.end_us // MIN, s.events) for s in sessions] == [(0, 0, 1), (30, 59, 2), (90, 90, 1)]


def test_an_out_of_order_event_bridges_two_sessions_into_one():
    first = merge_sessions([ev(0), ev(40)], GAP)
    assert len(first) == 2
    (merged,) = merge_sessions([*first, ev(20)], GAP)
    assert (merged.start_us, merged.end_us, merged.events) == (0, 40 * MIN, 3)


def test_order_of_input_does_not_matter():
    events = [ev(m) for m in (5, 80, 1, 33, 60, 2)]
    assert merge_sessions(events, GAP) == merge_sessions(list(reversed(events)), GAP)
    assert isinstance(merge_sessions(events, GAP)[0], Session)
