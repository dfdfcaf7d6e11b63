"""IoT telemetry end to end on the local broker: a seeded mix of readings and faults, one `--once` run, and
every gold table checked against an independent computation from the readings that were sent."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import Counter, defaultdict

import pytest
from pyspark.sql import functions as F

from pipelines.domains.iot.simulator import IotFaults, IotGenerator
from pipelines.simulators.base import KafkaSink, Tally, publish
from tests import support
from tests.support import pipeline, reaching_silver, run_once

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)
WATERMARK = dt.timedelta(minutes=10)  # tests' streaming.watermark
SILENCE = dt.timedelta(minutes=10)  # the spec's iot_silent_devices option
FAULTS = IotFaults(exact_duplicate=0.02, malformed=0.03, late=0.01, spike=0.01, stuck=0.004, dropout=0.004)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(dt.UTC).replace(tzinfo=None)


@pytest.fixture(scope="module")
def iot_run(tmp_path_factory, kafka, spark):
    import uuid

    from pipelines.model.config import load_settings
    from tests.conftest import write_conf

    folder = tmp_path_factory.mktemp("iot")
    topic = f"test.iot.{uuid.uuid4().hex[:10]}"
    settings = load_settings("test", write_conf(folder / "conf", "unused", topics={"iot": topic}))
    gen = IotGenerator(seed=5, start=START, devices=40, sites=4, interval=15, faults=FAULTS)
    events = list(itertools.islice(gen.events(), 5000))
    tally = publish(events, KafkaSink(settings.kafka, topic, Tally()))
    assert not tally.failed
    result = run_once(spark, settings, ["iot"])
    p = pipeline(settings, "iot")
    readings = reaching_silver(events)
    return {"p": p, "tally": tally, "truth": gen.ground_truth(), "readings": readings, "result": result}


def table(spark, run, name):
    return support.table(spark, run["p"], name)


def test_table_counts_and_reasons_match_what_was_sent(spark, iot_run):
    expected = iot_run["tally"].expected()
    layout = iot_run["p"].layout
    counts = {t: spark.read.format("delta").load(getattr(layout, t).path).count() for t in ("bronze", "silver", "quarantine")}
    assert counts == {k: expected[k] for k in counts}, f"tally {expected}"
    reasons = Counter(
        r.reason for r in table(spark, iot_run, "iot_readings_quarantine").select(F.explode("reasons").alias("reason")).collect()
    )
    assert reasons == iot_run["tally"].reasons


def test_device_minute_stats_equal_an_independent_computation(spark, iot_run):
    groups = defaultdict(list)
    for r in iot_run["readings"]:
        t = ts(r["reading_time"])
        groups[(t.replace(second=0, microsecond=0), r["device_id"])].append(r)
    rows = table(spark, iot_run, "iot_device_minute_stats").collect()
    assert len(rows) == len(groups)
    for row in rows:
        group = groups[(row.window_start, row.device_id)]
        assert row.readings == len(group)
        for m in ("temperature_c", "humidity_pct", "pressure_hpa", "battery_pct"):
            values = sorted(r[m] for r in group)
            assert row[f"{m}_min"] == values[0] and row[f"{m}_max"] == values[-1]
            assert math.isclose(row[f"{m}_avg"], sum(values) / len(values), rel_tol=1e-9)
            assert row[f"{m}_p95"] == values[math.ceil(0.95 * len(values)) - 1]  # nearest rank on small groups


def test_site_stats_count_readings_and_devices(spark, iot_run):
    groups = defaultdict(list)
    for r in iot_run["readings"]:
        t = ts(r["reading_time"])
        groups[(t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0), r["site_id"])].append(r)
    got = {(r.window_start, r.site_id): (r.readings, r.devices, r.temperature_c_max)
           for r in table(spark, iot_run, "iot_site_5min_stats").collect()}  # fmt: skip
    want = {k: (len(g), len({r["device_id"] for r in g}), max(r["temperature_c"] for r in g)) for k, g in groups.items()}
    assert got == want


def test_stuck_sensors_are_found_once_per_run(spark, iot_run):
    by_device = defaultdict(list)
    for r in iot_run["readings"]:
        by_device[r["device_id"]].append(r)
    expected = set()
    for device, rs in by_device.items():
        rs.sort(key=lambda r: (ts(r["reading_time"]), r["reading_id"]))
        run = 0
        for prev, cur in zip([None, *rs], rs):
            run = run + 1 if prev and prev["temperature_c"] == cur["temperature_c"] else 1
            if run == 8:  # the spec's stuck_after
                expected.add(cur["reading_id"])
    stuck = table(spark, iot_run, "iot_anomalies").where("rule = 'stuck'").collect()
    assert {r.reading_id for r in stuck} == expected
    assert len(stuck) == len(expected), "one anomaly per stuck run"
    truth_devices = {s["device_id"] for s in iot_run["truth"]["stuck_runs"]}
    assert {r.device_id for r in stuck} == truth_devices, "every injected stuck sensor, and only those"


def test_spikes_are_found_by_zscore(spark, iot_run):
    position = {}  # reading id -> how many readings of its device came before it
    by_device = defaultdict(list)
    for r in iot_run["readings"]:
        by_device[r["device_id"]].append(r)
    for rs in by_device.values():
        rs.sort(key=lambda r: (ts(r["reading_time"]), r["reading_id"]))
        position.update((r["reading_id"], i) for i, r in enumerate(rs))
    spikes = {s for s in iot_run["truth"]["spikes"] if position[s] >= 10}  # the spec's min_history
    flagged = {r.reading_id for r in table(spark, iot_run, "iot_anomalies").where("rule = 'zscore'").collect()}
    recall = len(spikes & flagged) / len(spikes)
    precision = len(spikes & flagged) / len(flagged)
    assert len(spikes) >= 30, f"the mix should hold enough spikes to measure ({len(spikes)})"
    assert recall >= 0.95 and precision >= 0.95, f"recall {recall:.2f}, precision {precision:.2f}"


def test_silent_devices_are_those_quiet_for_the_silence_at_the_watermark(spark, iot_run):
    last = {}
    for r in iot_run["readings"]:
        last[r["device_id"]] = max(last.get(r["device_id"], dt.datetime.min), ts(r["reading_time"]))
    watermark = max(last.values()) - WATERMARK
    expected = {d: t for d, t in last.items() if t + SILENCE < watermark}
    got = {r.device_id: r.last_seen for r in table(spark, iot_run, "iot_silent_devices").collect()}
    assert expected, "the mix should leave some devices silent"
    assert got == expected
    dropped = {s["device_id"] for s in iot_run["truth"]["silences"]}
    assert set(got) <= dropped, "only devices that dropped out are reported"
