"""IoT sensor telemetry: device and site statistics, anomalies, silent devices (gold.py), the sensors (simulator.py)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from pyspark.sql import functions as F

from pipelines.domains import Demo, DemoRun, Domain, SimulatorOptions
from pipelines.domains.iot.simulator import IotFaults, IotGenerator

FAULTS = {
    "duplicates": "exact re-sends",
    "malformed": "invalid JSON, wrong types, missing fields, out of range, not in set",
    "late": "event_time older than the watermark",
    "anomalies": "readings far off the device's normal",
    "stuck": "sensors stuck on one value (per reading)",
    "dropouts": "devices going silent (per reading)",
}


def simulator(o: SimulatorOptions) -> IotGenerator:
    faults = IotFaults(
        exact_duplicate=o.rate("duplicates"), malformed=o.rate("malformed"), late=o.rate("late"),
        spike=o.rate("anomalies"), stuck=o.rate("stuck"), dropout=o.rate("dropouts"),
    )  # fmt: skip
    return IotGenerator(seed=o.seed, start=o.start, faults=faults)


def demo_source(seed: int, now: dt.datetime) -> IotGenerator:
    faults = IotFaults(exact_duplicate=0.02, malformed=0.03, late=0.01, spike=0.005, stuck=0.002, dropout=0.003)
    return IotGenerator(seed=seed, start=now - dt.timedelta(hours=2), devices=50, sites=5, interval=30,
                        silence=(10 * 60, 40 * 60), faults=faults)  # fmt: skip


def summary(run: DemoRun) -> dict:
    truth = run.source.ground_truth()
    hot = run.read("iot_site_5min_stats").orderBy(F.desc("temperature_c_p95")).first()
    if hot:
        run.say(f"  hottest site window: {hot.site_id} at {hot.window_start:%H:%M}, p95 {hot.temperature_c_p95:.1f} C "
                f"over {hot.readings} readings from {hot.devices} devices")  # fmt: skip
    anomalies = Counter(r.rule for r in run.read("iot_anomalies").collect())
    silent = run.read("iot_silent_devices").count()
    run.say(f"  anomalies: {anomalies['zscore']} z-score (spikes injected: {len(truth['spikes'])}), "
            f"{anomalies['stuck']} stuck sensors (injected: {len(truth['stuck_runs'])})")  # fmt: skip
    run.say(f"  silent devices now: {silent} (dropouts injected: {len(truth['silences'])}; a device counts once "
            "its silence is 10 minutes old at the watermark)")  # fmt: skip
    run.say("  quarantine: " + run.quarantine_reasons("iot_readings_quarantine"))
    return {"anomalies": dict(anomalies), "silent_devices": silent}


DOMAIN = Domain(pipeline="iot", faults=FAULTS, simulator=simulator, demo=Demo(source=demo_source, summary=summary))
