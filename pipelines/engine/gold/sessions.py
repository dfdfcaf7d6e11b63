"""Sessions with an inactivity gap, kept up to date while they are open.

Spark's `session_window` cannot run in update mode (a session can merge with another, which needs a
retraction), so sessions are kept in state by `applyInPandasWithState`. Each micro-batch emits the current
value of every session it touched, and a `retracted` row for a session that was merged into an earlier one;
the sink upserts the former and deletes the latter. Events older than the watermark are left out, like in
the windowed aggregates.

State is held per bucket of session ids (`buckets`), not per session id: one Python call per bucket touched in
a micro-batch merges all of its events at once with pandas (`advance`), instead of one call per session (whose
fixed cost made sessions the slowest gold query: ~5k events/s on 2 cores). A bucket's state holds its open
sessions; a session is dropped from it once the watermark passes its end plus the gap (it can no longer change).
`merge_sessions` is the one-session-at-a-time definition that `advance` is tested against.

Each call still has a fixed cost (~15 ms of pandas on 2 cores), paid by every bucket a micro-batch touches, which
is every bucket once a batch holds more sessions than there are buckets: with 64 buckets, ~1 s of Python CPU per
micro-batch of 50,000 events; with 8, ~0.35 s. A batch that touches a bucket rewrites that bucket's state, so fewer
buckets cost more only for micro-batches of a few sessions among many open ones. The bucket of a session id is part
of the query's state: the count cannot change under an existing checkpoint. `BUCKETS` (64) is the default of specs
that do not name one (`lakepipe plan` tells a checkpoint built with another).

With the option `state: jvm` (opt-in) the state is kept by a JVM function of lakepipe's instead
(`io.lakepipe.gold.Sessions` in infra/jsonparse, built into .jars/spark by `make jars`): `flatMapGroupsWithState`
per session id, the same merge and the same rows, with no Python worker and no Arrow round trip. A `--once` run's
sessions query is ~17% faster with it; a running pipeline is not (README, Benchmarks, session 36). Its state is not
the pandas state's: the choice is part of the checkpoint like `buckets` (which it does not use). `state: jvm` where
the class is not on Spark's classpath stops with a line saying so, rather than writing the other kind of state.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pyarrow as pa
from py4j.java_gateway import JavaClass
from pyspark.errors import UnsupportedOperationException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from pipelines.errors import JarsMissingError
from pipelines.model.durations import micros

OUTPUT_SCHEMA = (
    "session_id string, user_id string, session_start timestamp, session_end timestamp, events long, "
    "page_views long, purchases long, revenue decimal(38,4), converted boolean, retracted boolean"
)
STATE_SCHEMA = "sessions binary"  # the bucket's open sessions, as an Arrow IPC stream
KEYS = ("session_id", "session_start")
COLUMNS = ["session_id", "user_id", "start_us", "end_us", "events", "page_views", "purchases", "revenue"]
BUCKETS = 64
STATES = ("pandas", "jvm")  # who keeps the sessions' state (option `state`)
JVM_SESSIONS = "io.lakepipe.gold.Sessions"


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


def event_sessions(events: pd.DataFrame) -> pd.DataFrame:
    """One-event sessions of events (session_id, user_id, event_type, price, quantity, t_us), vectorized."""
    purchase = events["event_type"] == "purchase"
    priced = purchase & events["price"].notna() & events["quantity"].notna()
    revenue = pd.Series([Decimal(0)] * len(events), index=events.index, dtype=object)
    if priced.any():
        revenue[priced] = [p * int(q) for p, q in zip(events["price"][priced], events["quantity"][priced])]
    return pd.DataFrame({
        "session_id": events["session_id"], "user_id": events["user_id"],
        "start_us": events["t_us"].astype("int64"), "end_us": events["t_us"].astype("int64"),
        "events": 1, "page_views": (events["event_type"] == "page_view").astype("int64"),
        "purchases": purchase.astype("int64"), "revenue": revenue,
    })  # fmt: skip


def advance(
    state: pd.DataFrame, events: pd.DataFrame, gap_us: int, watermark_us: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Merge a batch of events into a bucket's open sessions (pure, vectorized).

    Returns the sessions of every session id the events touched (current values), the sessions they
    replaced (merged into an earlier one: to retract), and the new state (sessions that can still change).
    Same result as `merge_sessions` per session id.
    """
    new = event_sessions(events[events["t_us"] >= watermark_us])
    touched = new["session_id"].unique()
    hit = state["session_id"].isin(touched)
    before, rest = state[hit], state[~hit]
    merged = pd.concat([before, new], ignore_index=True).sort_values(["session_id", "start_us", "end_us"], kind="stable")
    reach = merged.groupby("session_id", sort=False)["end_us"].cummax()
    prev = reach.groupby(merged["session_id"], sort=False).shift(1)
    starts_new = prev.isna() | (merged["start_us"] - prev >= gap_us)
    group = starts_new.cumsum()
    after = merged.groupby(group, sort=False).agg(
        session_id=("session_id", "first"), user_id=("user_id", "first"), start_us=("start_us", "min"),
        end_us=("end_us", "max"), events=("events", "sum"), page_views=("page_views", "sum"),
        purchases=("purchases", "sum"), revenue=("revenue", "sum"),
    ).reset_index(drop=True)  # fmt: skip
    kept = pd.MultiIndex.from_frame(after[["session_id", "start_us"]])
    gone = before[~pd.MultiIndex.from_frame(before[["session_id", "start_us"]]).isin(kept)]
    open_ = pd.concat([rest, after], ignore_index=True)
    return after, gone, open_[open_["end_us"] > watermark_us - gap_us].reset_index(drop=True)


def _rows(sessions: pd.DataFrame, retracted: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "session_id": sessions["session_id"], "user_id": sessions["user_id"],
        "session_start": pd.to_datetime(sessions["start_us"], unit="us"),
        "session_end": pd.to_datetime(sessions["end_us"], unit="us"),
        "events": sessions["events"].astype("int64"), "page_views": sessions["page_views"].astype("int64"),
        "purchases": sessions["purchases"].astype("int64"), "revenue": sessions["revenue"],
        "converted": sessions["purchases"] > 0, "retracted": retracted,
    })  # fmt: skip


def _load(state: GroupState) -> pd.DataFrame:
    if not state.exists:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("session_id", "user_id", "revenue") else "int64")
                             for c in COLUMNS})  # fmt: skip
    table = pa.ipc.open_stream(io.BytesIO(state.get[0])).read_all()
    out = table.to_pandas()
    out["revenue"] = [Decimal(r) for r in out["revenue"]]
    return out


def _save(state: GroupState, sessions: pd.DataFrame, gap_us: int) -> None:
    if sessions.empty:
        state.remove()
        return
    stored = sessions.assign(revenue=sessions["revenue"].map(str))
    sink = io.BytesIO()
    table = pa.Table.from_pandas(stored[COLUMNS], preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    state.update((sink.getvalue(),))
    state.setTimeoutTimestamp((int(sessions["end_us"].min()) + gap_us) // 1000)  # when the first can be dropped


def _update(gap_us: int):
    def update(_key: tuple, batches: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        watermark_us = state.getCurrentWatermarkMs() * 1000
        sessions = _load(state)
        frames = list(batches)
        if state.hasTimedOut or not frames:
            _save(state, sessions[sessions["end_us"] > watermark_us - gap_us], gap_us)
            return
        after, gone, open_ = advance(sessions, pd.concat(frames, ignore_index=True), gap_us, watermark_us)
        _save(state, open_, gap_us)
        if len(after) or len(gone):
            yield pd.concat([_rows(after, False), _rows(gone, True)], ignore_index=True)

    return update


def bucket_count(buckets: int | str) -> int:
    """The number of buckets an output's `buckets` option gives (spec options are text; pure)."""
    text = str(buckets).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"sessions: option buckets must be a whole number of at least 1, not {buckets!r}")
    return int(text)


def state_kind(state: str) -> str:
    """Who keeps the state, from an output's `state` option (spec options are text; pure)."""
    kind = str(state).strip().lower()
    if kind not in STATES:
        raise ValueError(f"sessions: option state must be one of {', '.join(STATES)}, not {state!r}")
    return kind


def sessionize(events: DataFrame, gap: str, buckets: int | str = BUCKETS, state: str = "pandas") -> DataFrame:
    """Sessions of a watermarked event stream (streaming only), with `retracted` rows for merged ones; state in
    `buckets` groups of session ids kept by pandas, or with `state="jvm"` per session id by lakepipe's JVM function."""
    buckets = bucket_count(buckets)
    gap_us = micros(gap)
    if state_kind(state) == "jvm":
        return _jvm_sessions(events, gap_us)
    slim = events.select(
        F.pmod(F.xxhash64("session_id"), F.lit(buckets)).alias("_bucket"),
        "session_id", "user_id", "event_type", "price", "quantity",
        "event_time", F.unix_micros("event_time").alias("t_us"),
    )  # fmt: skip
    return slim.groupBy("_bucket").applyInPandasWithState(
        _update(gap_us), OUTPUT_SCHEMA, STATE_SCHEMA, "update", GroupStateTimeout.EventTimeTimeout
    )


def _jvm_sessions(events: DataFrame, gap_us: int) -> DataFrame:
    """`sessionize` by `io.lakepipe.gold.Sessions`: its input columns by position (event_time kept last, for the
    watermark), its output's microseconds turned into timestamps."""
    spark = events.sparkSession
    if not events.isStreaming:  # as Spark says of applyInPandasWithState: its state has no meaning in a batch
        raise UnsupportedOperationException("sessions (state: jvm) are unsupported in a batch query")
    slim = events.select(
        "session_id", "user_id", F.unix_micros("event_time").alias("t_us"),
        (F.col("event_type") == "page_view").cast("long").alias("page_view"),
        (F.col("event_type") == "purchase").cast("long").alias("purchase"),
        "price", F.col("quantity").cast("long").alias("quantity"), "event_time",
    )  # fmt: skip
    target = spark._jvm  # noqa: SLF001 - lakepipe's JVM function is only reachable through the gateway
    for part in JVM_SESSIONS.split("."):
        target = getattr(target, part)
    if not isinstance(target, JavaClass):  # py4j gives a package for a class it cannot load
        raise JarsMissingError(
            f"sessions: option state: jvm needs {JVM_SESSIONS} on Spark's classpath (.jars/spark/lakepipe-jsonparse.jar, "
            f"built by `make jars`; add it to --jars), or state: pandas (on a new checkpoint)"
        )
    rows = DataFrame(target.sessionize(slim._jdf, gap_us), spark)  # noqa: SLF001
    return rows.select(
        "session_id", "user_id", F.timestamp_micros("start_us").alias("session_start"),
        F.timestamp_micros("end_us").alias("session_end"), "events", "page_views", "purchases", "revenue",
        (F.col("purchases") > 0).alias("converted"), "retracted",
    )  # fmt: skip
