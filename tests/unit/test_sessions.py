"""Session merging (pure): gaps split sessions, late bridging events merge them, totals add up."""

from __future__ import annotations

from decimal import Decimal

from pipelines.engine.gold.sessions import Session, event_session, merge_sessions

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


def _events(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["session_id", "user_id", "event_type", "price", "quantity", "t_us"])


def _reference(batches, gap_us):
    """Sessions per session id after each batch, by merge_sessions one event at a time."""
    sessions: dict[str, list[Session]] = {}
    for batch in batches:
        for sid, user, kind, price, qty, t in batch:
            sessions[sid] = merge_sessions([*sessions.get(sid, []), event_session(t, user, kind, price, qty)], gap_us)
    return {(sid, s.start_us): s for sid, ss in sessions.items() for s in ss}


def test_advance_matches_merge_sessions_on_random_batches():
    """The vectorized bucket update gives, batch after batch, the sessions merge_sessions defines, and retracts
    exactly the sessions that merged into earlier ones."""
    import random

    import pandas as pd

    from pipelines.engine.gold.sessions import COLUMNS, advance

    rng = random.Random(7)
    batches = []
    for _ in range(6):
        batch = []
        for _ in range(rng.randint(1, 40)):
            kind = rng.choice(["page_view", "purchase", "search"])
            price = Decimal(f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}") if kind == "purchase" else None
            batch.append((f"s{rng.randint(1, 6)}", f"u{rng.randint(1, 3)}", kind, price,
                          rng.randint(1, 4) if price else None, rng.randint(0, 300) * MIN // 2))  # fmt: skip
        batches.append(batch)
    state = pd.DataFrame({c: pd.Series(dtype=object if c in ("session_id", "user_id", "revenue") else "int64")
                          for c in COLUMNS})  # fmt: skip
    table: dict[tuple, tuple] = {}
    for i, batch in enumerate(batches):
        after, gone, state = advance(state, _events(batch), GAP, watermark_us=0)
        for r in gone.itertuples():
            table.pop((r.session_id, r.start_us), None)
        for r in after.itertuples():
            table[(r.session_id, r.start_us)] = (r.end_us, r.user_id, r.events, r.page_views, r.purchases, r.revenue)
        expected = _reference(batches[: i + 1], GAP)
        assert table == {k: (s.end_us, s.user_id, s.events, s.page_views, s.purchases, Decimal(s.revenue))
                         for k, s in expected.items()}, f"after batch {i}"  # fmt: skip


def test_advance_leaves_out_late_events_and_drops_sessions_that_can_no_longer_change():
    import pandas as pd

    from pipelines.engine.gold.sessions import COLUMNS, advance

    empty = pd.DataFrame({c: pd.Series(dtype=object if c in ("session_id", "user_id", "revenue") else "int64")
                          for c in COLUMNS})  # fmt: skip
    _, _, state = advance(empty, _events([("a", "u", "page_view", None, None, 0), ("b", "u", "page_view", None, None, 100 * MIN)]), GAP, 0)
    assert sorted(state["session_id"]) == ["a", "b"]
    # watermark at minute 40: a session ending at minute 0 can no longer grow (0 + 30 <= 40); an event at
    # minute 20 is late and left out
    after, gone, state = advance(state, _events([("a", "u", "page_view", None, None, 20 * MIN),
                                                  ("b", "u", "page_view", None, None, 101 * MIN)]), GAP, 40 * MIN)  # fmt: skip
    assert list(after["session_id"]) == ["b"] and after["events"].tolist() == [2] and gone.empty
    assert list(state["session_id"]) == ["b"], "session a is closed: dropped from the state"
