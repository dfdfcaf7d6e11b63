"""Synthetic IoT telemetry: thousands of devices over many sites, each reading every `interval` seconds.

Deterministic for a seed, in simulated time. Temperature follows a daily cycle per site plus a per-device
offset, a slow drift and noise; humidity moves against temperature; pressure sits at the site's altitude;
batteries decay. Some device clocks are skewed; devices sometimes send a burst of quick readings. Injected at
rates: spikes (anomalies), stuck sensors (one value repeated), dropouts (a device goes silent for a while),
exact re-sends, late readings and malformed ones (each with the reasons the pipeline must give).
`ground_truth()` lists what was injected, for checking the anomaly and silent-device tables.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from pipelines.simulators.base import RecentEvents, SimEvent, encode, iso_utc

MALFORMED = ("invalid_json", "impossible_temperature", "impossible_humidity", "missing_device", "text_pressure")


@dataclass(frozen=True)
class IotFaults:
    """Probability per reading of each injected behaviour (faults replace a reading; the others alter it)."""

    exact_duplicate: float = 0.0
    malformed: float = 0.0
    late: float = 0.0
    spike: float = 0.0
    stuck: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if any(r < 0 for r in vars(self).values()) or self.exact_duplicate + self.malformed + self.late > 1:
            raise ValueError("fault rates must be >= 0 and the replacing ones add up to at most 1")


@dataclass
class _Device:
    device_id: str
    site: int
    offset: float
    drift_per_hour: float
    skew_s: float
    battery: float
    firmware: str
    seq: int = 0
    stuck_left: int = 0
    stuck_value: float = 0.0
    burst_left: int = 0


@dataclass
class IotTruth:
    spikes: list[str] = field(default_factory=list)  # reading ids
    stuck_runs: list[dict] = field(default_factory=list)  # device, first reading id, length
    silences: list[dict] = field(default_factory=list)  # device, last reading time, resumes at


class IotGenerator:
    def __init__(
        self,
        seed: int = 11,
        start: dt.datetime | None = None,
        devices: int = 1000,
        sites: int = 40,
        interval: float = 60.0,
        faults: IotFaults = IotFaults(),
        late_by: tuple[float, float] = (15 * 60, 45 * 60),
        silence: tuple[float, float] = (20 * 60, 60 * 60),
        stuck_run: int = 12,
    ) -> None:
        self.rng = random.Random(seed)
        self.start = (start or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        self.interval = interval
        self.faults = faults
        self.late_by, self.silence, self.stuck_run = late_by, silence, stuck_run
        rng = self.rng
        self.site_base = [rng.uniform(-5, 25) for _ in range(sites)]
        self.site_pressure = [rng.uniform(950, 1020) for _ in range(sites)]
        self.devices = [
            _Device(
                device_id=f"dev-{n:05d}", site=n % sites, offset=rng.gauss(0, 1.0),
                drift_per_hour=rng.gauss(0, 0.05), skew_s=rng.choice([0.0] * 8 + [rng.uniform(-120, 120)]),
                battery=rng.uniform(60, 100), firmware=rng.choice(["1.4.2", "1.5.0", "2.0.1"]),
            )  # fmt: skip
            for n in range(devices)
        ]
        self.queue = [(self.start.timestamp() + rng.uniform(0, interval), i) for i in range(devices)]
        heapq.heapify(self.queue)
        self.recent = RecentEvents(rng)
        self.truth = IotTruth()

    def events(self) -> Iterator[SimEvent]:
        while True:
            yield self.next_event()

    def ground_truth(self) -> dict:
        return {"spikes": self.truth.spikes, "stuck_runs": self.truth.stuck_runs, "silences": self.truth.silences}

    def next_event(self) -> SimEvent:
        f = self.faults
        r = self.rng.random()
        if r < f.exact_duplicate and self.recent.events:
            return self.recent.resend()
        r -= f.exact_duplicate
        if r < f.malformed:
            return self._malformed()
        r -= f.malformed
        if r < f.late:
            return self._reading("late", back=self.rng.uniform(*self.late_by))
        return self._reading("valid")

    def _reading(self, kind: str, back: float = 0.0) -> SimEvent:
        t, d = self._advance()
        payload = self._payload(d, t - back)
        if kind == "valid":
            kind = self._alter(d, payload)
        return self.recent.add(encode(kind, d.device_id, payload))

    def _advance(self) -> tuple[float, _Device]:
        t, i = heapq.heappop(self.queue)
        d = self.devices[i]
        if d.burst_left:
            d.burst_left -= 1
            gap = 1.0
        elif self.rng.random() < 0.002:
            d.burst_left, gap = 5, 1.0
        else:
            gap = self.interval * self.rng.uniform(0.9, 1.1)
        if self.rng.random() < self.faults.dropout:
            gap = self.rng.uniform(*self.silence)
            self.truth.silences.append(
                {"device_id": d.device_id, "last_reading": iso_utc(self._clock(t, d)), "resumes": iso_utc(self._clock(t + gap, d))}
            )
        heapq.heappush(self.queue, (t + gap, i))
        return t, d

    def _clock(self, t: float, d: _Device) -> dt.datetime:
        return dt.datetime.fromtimestamp(t + d.skew_s, dt.UTC)

    def _payload(self, d: _Device, t: float) -> dict:
        d.seq += 1
        hours = (t - self.start.timestamp()) / 3600
        hour_of_day = (t / 3600) % 24
        temp = self.site_base[d.site] + 6 * math.sin(2 * math.pi * (hour_of_day - 9) / 24)
        temp += d.offset + d.drift_per_hour * hours + self.rng.gauss(0, 0.25)
        d.battery = max(0.0, d.battery - self.rng.uniform(0, 0.01))
        return {
            "reading_id": f"{d.device_id}-{d.seq:08d}",
            "device_id": d.device_id,
            "site_id": f"site-{d.site:03d}",
            "reading_time": iso_utc(self._clock(t, d)),
            "temperature_c": round(temp, 2),
            "humidity_pct": round(min(99.0, max(5.0, 60 - (temp - 15) * 1.5 + self.rng.gauss(0, 2))), 1),
            "pressure_hpa": round(self.site_pressure[d.site] + self.rng.gauss(0, 0.5), 1),
            "battery_pct": round(d.battery, 2),
            "firmware": d.firmware,
        }

    def _alter(self, d: _Device, p: dict) -> str:
        """Apply a stuck run or a spike to a valid reading; the kind it becomes."""
        if d.stuck_left:
            d.stuck_left -= 1
            p["temperature_c"] = d.stuck_value
            return "stuck"
        r = self.rng.random()
        if r < self.faults.stuck:
            d.stuck_left, d.stuck_value = self.stuck_run - 1, p["temperature_c"]
            self.truth.stuck_runs.append({"device_id": d.device_id, "first_reading": p["reading_id"], "length": self.stuck_run})
            return "stuck"
        if r < self.faults.stuck + self.faults.spike:
            p["temperature_c"] = round(p["temperature_c"] + self.rng.choice([-1, 1]) * self.rng.uniform(15, 25), 2)
            self.truth.spikes.append(p["reading_id"])
            return "spike"
        return "valid"

    def _malformed(self) -> SimEvent:
        t, d = self._advance()
        p = self._payload(d, t)
        kind = self.rng.choice(MALFORMED)
        if kind == "invalid_json":
            return SimEvent(kind, d.device_id.encode(), json.dumps(p).encode()[:-3], ("invalid_json",))
        if kind == "impossible_temperature":
            p["temperature_c"] = 480.0
            return encode(kind, d.device_id, p, ("out_of_range:temperature_c",))
        if kind == "impossible_humidity":
            p["humidity_pct"] = 140.5
            return encode(kind, d.device_id, p, ("out_of_range:humidity_pct",))
        if kind == "missing_device":
            del p["device_id"]
            return encode(kind, None, p, ("missing:device_id",))
        p["pressure_hpa"] = str(p["pressure_hpa"])
        return encode(kind, d.device_id, p, ("bad_type:pressure_hpa",))
