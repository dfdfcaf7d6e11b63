"""IoT gold: per-device and per-site statistics, anomalies, and devices gone silent.

- `device_stats` / `site_stats`: count, avg, min, max and approximate p95 of each measure per window.
- `anomalies`: per device, a reading more than `threshold` standard deviations from the mean of the device's
  last `history` normal readings (a z-score over a rolling window, computed once there are `min_history`
  of them). Anomalous readings stay out of the window, so one spike does not hide the next; if
  `min_history` readings in a row are anomalous, the level has moved and the window restarts from them.
  A sensor stuck on one value for `stuck_after` readings in a row is reported once per stuck run.
  Readings are taken in event-time order within a micro-batch, then in arrival order.
- `silent_devices`: devices that sent nothing for `silence` of event time, found with an event-time timer
  (transformWithState, RocksDB state store) once the watermark passes; a device that speaks again is
  reported `recovered`, which the upsert turns into a delete, so the table lists the devices silent now.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import (
    ExpiredTimerInfo,
    StatefulProcessor,
    StatefulProcessorHandle,
    TimerValues,
)

from pipelines.engine.gold.worker_time import from_ms, to_ms
from pipelines.model.durations import micros

MEASURES = ("temperature_c", "humidity_pct", "pressure_hpa", "battery_pct")
CHECKED = ("temperature_c", "humidity_pct", "pressure_hpa")  # battery only ever falls: no z-score for it
P95_ACCURACY = 1000  # percentile_approx: relative error 1/1000 of the rows of a window

ANOMALY_SCHEMA = (
    "device_id string, site_id string, reading_id string, reading_time timestamp, measure string, "
    "value double, rule string, score double, baseline_mean double, baseline_std double"
)
SILENT_SCHEMA = "device_id string, site_id string, last_seen timestamp, detected_at timestamp, recovered boolean"


def _stats(events: DataFrame, keys: tuple[str, ...], width: str, extra: list) -> DataFrame:
    aggs = [F.count(F.lit(1)).alias("readings"), *extra]
    for m in MEASURES:
        aggs += [
            F.avg(m).alias(f"{m}_avg"),
            F.min(m).alias(f"{m}_min"),
            F.max(m).alias(f"{m}_max"),
            F.percentile_approx(m, 0.95, P95_ACCURACY).alias(f"{m}_p95"),
        ]
    agg = events.groupBy(F.window("reading_time", width), *keys).agg(*aggs)
    rest = [c for c in agg.columns if c not in ("window", *keys)]
    return agg.select(F.col("window.start").alias("window_start"), F.col("window.end").alias("window_end"), *keys, *rest)


def device_stats(events: DataFrame, width: str = "1 minute") -> DataFrame:
    """Per device and window of `width`: readings, and avg/min/max/p95 of each measure."""
    return _stats(events, ("device_id", "site_id"), width, [])


def site_stats(events: DataFrame, width: str = "5 minutes") -> DataFrame:
    """Per site and window of `width`: readings, reporting devices (exact), avg/min/max/p95 of each measure."""
    return _stats(events, ("site_id",), width, [F.size(F.collect_set("device_id")).cast("long").alias("devices")])


# -- anomalies ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnomalyRules:
    history: int = 30
    min_history: int = 10
    threshold: float = 5.0
    stuck_after: int = 8


def detect(state: dict, readings: list[dict], rules: AnomalyRules) -> tuple[dict, list[dict]]:
    """Run the anomaly rules over `readings` (in order) from `state`; the new state and the anomalies (pure).

    `state` maps each checked measure to {"recent": [normal values], "outliers": [anomalous values in a
    row], "stuck": [value, run length]}.
    """
    state = {m: {k: list(v) for k, v in s.items()} for m, s in state.items()}
    found = []
    for r in readings:
        for m in CHECKED:
            x = r[m]
            s = state.setdefault(m, {"recent": [], "outliers": [], "stuck": [None, 0]})
            recent = s["recent"]
            outlier = False
            if len(recent) >= rules.min_history:
                mean = sum(recent) / len(recent)
                std = math.sqrt(sum((v - mean) ** 2 for v in recent) / len(recent))
                outlier = std > 0 and abs(x - mean) / std > rules.threshold
                if outlier:
                    found.append(_anomaly(r, m, "zscore", (x - mean) / std, mean, std))
            run = s["stuck"][1] + 1 if s["stuck"][0] == x else 1
            s["stuck"] = [x, run]
            if run == rules.stuck_after:
                found.append(_anomaly(r, m, "stuck", float(run), x, 0.0))
            if not outlier:
                s["outliers"] = []
                recent.append(x)
            else:
                s["outliers"].append(x)
                if len(s["outliers"]) >= rules.min_history:  # not a spike: the level moved
                    recent[:], s["outliers"] = s["outliers"], []
            del recent[: -rules.history]
    return state, found


def _anomaly(r: dict, measure: str, rule: str, score: float, mean: float, std: float) -> dict:
    return {
        "device_id": r["device_id"], "site_id": r["site_id"], "reading_id": r["reading_id"],
        "reading_time": r["reading_time"], "measure": measure, "value": r[measure], "rule": rule,
        "score": round(score, 6), "baseline_mean": round(mean, 6), "baseline_std": round(std, 6),
    }  # fmt: skip


class _AnomalyDetector(StatefulProcessor):
    def __init__(self, rules: AnomalyRules) -> None:
        self.rules = rules

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.state = handle.getValueState("measures", "json string")

    def handleInputRows(self, key, rows, timerValues: TimerValues) -> Iterator[Row]:  # noqa: N802
        readings = sorted((r.asDict() for r in rows), key=lambda r: (r["reading_time"], r["reading_id"]))
        before = json.loads(self.state.get()[0]) if self.state.exists() else {}
        after, found = detect(before, readings, self.rules)
        self.state.update((json.dumps(after),))
        for a in found:
            yield Row(**a)

    def close(self) -> None:
        pass


def anomalies(
    events: DataFrame, history: str = "30", min_history: str = "10", threshold: str = "5.0", stuck_after: str = "8"
) -> DataFrame:
    """Anomalous readings per device (streaming only): z-score over a rolling window, and stuck sensors."""
    rules = AnomalyRules(int(history), int(min_history), float(threshold), int(stuck_after))
    slim = events.select("device_id", "site_id", "reading_id", "reading_time", *CHECKED)
    return slim.groupBy("device_id").transformWithState(
        _AnomalyDetector(rules), ANOMALY_SCHEMA, outputMode="Append", timeMode="None"
    )


# -- silent devices ----------------------------------------------------------------------------------------


class _SilenceWatch(StatefulProcessor):
    def __init__(self, silence_ms: int) -> None:
        self.silence_ms = silence_ms

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.seen = handle.getValueState("seen", "site_id string, last_ms long, silent boolean")

    def handleInputRows(self, key, rows, timerValues: TimerValues) -> Iterator[Row]:  # noqa: N802
        device_id = key[0] if isinstance(key, tuple) else key
        rows = list(rows)
        latest = max(rows, key=lambda r: r.reading_time)
        last_ms = to_ms(latest.reading_time)
        site_id = latest.site_id
        if self.seen.exists():
            prev_site, prev_ms, silent = self.seen.get()
            if prev_ms >= last_ms:
                last_ms, site_id = prev_ms, prev_site
            if silent:
                yield Row(device_id=device_id, site_id=site_id, last_seen=from_ms(last_ms), detected_at=None, recovered=True)
        for t in list(self.handle.listTimers()):
            self.handle.deleteTimer(t)
        self.handle.registerTimer(last_ms + self.silence_ms)
        self.seen.update((site_id, last_ms, False))

    def handleExpiredTimer(  # noqa: N802
        self, key, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[Row]:
        device_id = key[0] if isinstance(key, tuple) else key
        site_id, last_ms, _ = self.seen.get()
        self.seen.update((site_id, last_ms, True))
        detected = from_ms(timerValues.getCurrentWatermarkInMs())
        yield Row(device_id=device_id, site_id=site_id, last_seen=from_ms(last_ms), detected_at=detected, recovered=False)

    def close(self) -> None:
        pass


def silent_devices(events: DataFrame, silence: str = "10 minutes") -> DataFrame:
    """Devices silent for `silence` of event time (streaming only), with `recovered` rows when they return."""
    slim = events.select("device_id", "site_id", "reading_time")
    return slim.groupBy("device_id").transformWithState(
        _SilenceWatch(micros(silence) // 1000), SILENT_SCHEMA, outputMode="Update", timeMode="EventTime"
    )

