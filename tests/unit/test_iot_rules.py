"""IoT anomaly rules (pure): a z-score over the device's recent normal readings, stuck sensors reported once."""

from __future__ import annotations

import datetime as dt

import pytest

from pipelines.domains.iot.gold import AnomalyRules, detect

RULES = AnomalyRules(history=10, min_history=5, threshold=4.0, stuck_after=4)
T0 = dt.datetime(2026, 11, 22, 10)


def readings(temps, humidity=None):
    humidity = humidity or [50.0 + (i % 3) for i in range(len(temps))]
    return [
        {"device_id": "d1", "site_id": "s1", "reading_id": f"r{i}", "reading_time": T0 + dt.timedelta(minutes=i),
         "temperature_c": t, "humidity_pct": h, "pressure_hpa": 1000.0 + (i % 2)}
        for i, (t, h) in enumerate(zip(temps, humidity))
    ]  # fmt: skip


def found(state, rows):
    return [(a["reading_id"], a["measure"], a["rule"]) for a in detect(state, rows, RULES)[1]]


def test_a_spike_far_from_recent_readings_is_flagged_with_its_score():
    temps = [20.0, 20.5, 19.5, 20.2, 19.8, 20.1, 35.0, 20.0]
    state, out = detect({}, readings(temps), RULES)
    assert [(a["reading_id"], a["measure"], a["rule"]) for a in out] == [("r6", "temperature_c", "zscore")]
    a = out[0]
    assert a["baseline_mean"] == pytest.approx(20.016667, abs=1e-6)
    assert a["baseline_std"] == pytest.approx(0.313138, abs=1e-6)  # population std: sqrt(0.588333 / 6)
    assert a["score"] > 4.0 and a["value"] == 35.0


def test_an_earlier_spike_in_the_window_does_not_hide_the_next():
    temps = [20.0, 20.5, 19.5, 20.2, 19.8, 20.1, 35.0, 20.0, 20.3, 4.0]
    assert found({}, readings(temps)) == [("r6", "temperature_c", "zscore"), ("r9", "temperature_c", "zscore")]


def test_a_moved_level_becomes_the_new_baseline():
    temps = [20.0, 20.5, 19.5, 20.2, 19.8, 30.0, 30.4, 29.6, 30.2, 29.8, 30.1, 29.9]
    assert found({}, readings(temps)) == [(f"r{i}", "temperature_c", "zscore") for i in range(5, 10)]


def test_no_zscore_before_min_history_readings():
    assert found({}, readings([20.0, 20.1, 19.9, 20.2, 60.0])) == []  # only 4 readings before the jump


def test_a_stuck_sensor_is_reported_once_per_run():
    temps = [20.0, 20.4, 21.0, 21.0, 21.0, 21.0, 21.0, 21.0, 20.3]
    assert found({}, readings(temps)) == [("r5", "temperature_c", "stuck")]


def test_state_carries_over_between_batches_exactly():
    temps = [20.0, 20.5, 19.5, 20.2, 19.8, 20.1, 35.0, 21.0, 21.0, 21.0, 21.0]
    rows = readings(temps)
    whole = found({}, rows)
    state, first = detect({}, rows[:4], RULES)
    _, second = detect(state, rows[4:], RULES)
    assert whole == [(a["reading_id"], a["measure"], a["rule"]) for a in first + second]
    assert ("r10", "temperature_c", "stuck") in whole
