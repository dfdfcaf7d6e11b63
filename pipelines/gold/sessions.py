"""Sessions with an inactivity gap, kept up to date while they are open.

Spark's `session_window` cannot run in update mode (a session can merge with another, which needs a
retraction), so sessions are kept per session_id in state (`applyInPandasWithState`). Each micro-batch
emits the current value of every session it touched, and a `retracted` row for a session that was merged
into an earlier one; the sink upserts the former and deletes the latter. State for a session_id is dropped
once the watermark passes its last event plus the gap: the session can no longer change. Events older than
the watermark are left out, like in the windowed aggregates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from pipelines.durations import micros

OUTPUT_SCHEMA = (
    "session_id string, user_id string, session_start timestamp, session_end timestamp, events long, "
    "page_views long, purchases long, revenue decimal(38,4), converted boolean, retracted boolean"
)
STATE_SCHEMA = "sessions string"
KEYS = ("session_id", "session_start")


@dataclass(frozen=True)
class Session:
    start_us: int
    end_us: int
    user_id: str
    events: int
    page_views: int
    purchases: int
    revenue: str  # a decimal, as text (exact)

    def merged(self, other: Session) -> Session:
        first = self if self.start_us <= other.start_us else other
        return Session(
            start_us=min(self.start_us, other.start_us),
            end_us=max(self.end_us, other.end_us),
            user_id=first.user_id,
            events=self.events + other.events,
            page_views=self.page_views + other.page_views,
            purchases=self.purchases + other.purchases,
            revenue=str(Decimal(self.revenue) + Decimal(other.revenue)),
        )


def event_session(t_us: int, user_id: str, event_type: str, price: Decimal | None, quantity: int | None) -> Session:
    """A one-event session."""
    purchase = event_type == "purchase"
    amount = price * quantity if purchase and price is not None and quantity is not None else Decimal(0)
    return Session(t_us, t_us, user_id, 1, int(event_type == "page_view"), int(purchase), str(amount))


def merge_sessions(sessions: Iterable[Session], gap_us: int) -> list[Session]:
    """Merge sessions (and one-event sessions) closer than `gap_us`, in time order (pure)."""
    out: list[Session] = []
    for s in sorted(sessions, key=lambda s: (s.start_us, s.end_us)):
        if out and s.start_us - out[-1].end_us < gap_us:
            out[-1] = out[-1].merged(s)
        else:
            out.append(s)
    return out


def _update(gap_us: int):
    def update(key: tuple, batches: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        (session_id,) = key
        before = [Session(**d) for d in json.loads(state.get[0])] if state.exists else []
        watermark_us = state.getCurrentWatermarkMs() * 1000
        new = [
            event_session(int(r.t_us), r.user_id, r.event_type, r.price if not pd.isna(r.price) else None,
                          int(r.quantity) if not pd.isna(r.quantity) else None)
            for pdf in batches
            for r in pdf.itertuples(index=False)
            if r.t_us >= watermark_us
        ]  # fmt: skip
        if not new:
            return
        after = merge_sessions([*before, *new], gap_us)
        state.update((json.dumps([asdict(s) for s in after]),))
        state.setTimeoutTimestamp(max(s.end_us for s in after) // 1000 + gap_us // 1000)
        starts = {s.start_us for s in after}
        rows = [_row(session_id, s, retracted=False) for s in after]
        rows += [_row(session_id, s, retracted=True) for s in before if s.start_us not in starts]
        yield pd.DataFrame(rows)

    return update


def _row(session_id: str, s: Session, retracted: bool) -> dict:
    return {
        "session_id": session_id,
        "user_id": s.user_id,
        "session_start": pd.Timestamp(s.start_us, unit="us"),
        "session_end": pd.Timestamp(s.end_us, unit="us"),
        "events": s.events,
        "page_views": s.page_views,
        "purchases": s.purchases,
        "revenue": Decimal(s.revenue),
        "converted": s.purchases > 0,
        "retracted": retracted,
    }


def sessionize(events: DataFrame, gap: str) -> DataFrame:
    """Sessions of a watermarked event stream (streaming only), with `retracted` rows for merged ones."""
    gap_us = micros(gap)
    slim = events.select(
        "session_id", "user_id", "event_type", "price", "quantity",
        "event_time", F.unix_micros("event_time").alias("t_us"),
    )  # fmt: skip
    return slim.groupBy("session_id").applyInPandasWithState(
        _update(gap_us), OUTPUT_SCHEMA, STATE_SCHEMA, "update", GroupStateTimeout.EventTimeTimeout
    )
