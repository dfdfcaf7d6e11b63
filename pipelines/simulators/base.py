"""The simulator interface: sources yield `SimEvent`s, sinks send them (Kafka) or keep them (file).

Every event carries its `kind` (valid, or the fault it injects) and, for rejects, the reasons the
pipeline must give, so a run's tally says exactly what silver, quarantine and the duplicate count
should hold.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer

from pipelines.model.config import KafkaSettings
from pipelines.platform.kafka_admin import client_config, ensure_topic

# What the pipeline does with each kind of event: kinds that carry reasons are quarantined, exact duplicates
# are counted and dropped, every other kind (valid, late, out_of_order, injected anomalies...) reaches silver.
EXACT_DUPLICATE = "exact_duplicate"
TOMBSTONE = "tombstone"  # a CDC delete's null-valued record: skipped by pipelines with `tombstones: skip`
JSON_HEADERS = (("source", b"lakepipe-simulator"), ("content-type", b"application/json"))


@dataclass(frozen=True, slots=True)
class SimEvent:
    kind: str
    key: bytes | None
    value: bytes | None
    reasons: tuple[str, ...] = ()  # for rejected kinds: the quarantine reasons expected
    headers: tuple[tuple[str, bytes], ...] = ()

    def payload(self) -> dict | None:
        """The JSON object of the value, if it is one."""
        try:
            obj = json.loads(self.value) if self.value else None
        except (ValueError, UnicodeDecodeError):
            return None
        return obj if isinstance(obj, dict) else None


class EventSource(Protocol):
    def events(self) -> Iterator[SimEvent]: ...


@dataclass
class Tally:
    """What was sent and delivered, by kind, and what the pipeline should therefore hold."""

    sent: Counter = field(default_factory=Counter)
    delivered: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    rejected_kinds: set[str] = field(default_factory=set)

    def record(self, event: SimEvent) -> None:
        self.sent[event.kind] += 1
        self.reasons.update(event.reasons)
        if event.reasons:
            self.rejected_kinds.add(event.kind)

    def expected(self) -> dict:
        d = self.delivered
        skipped = (EXACT_DUPLICATE, TOMBSTONE)
        silver = sum(n for k, n in d.items() if k not in self.rejected_kinds and k not in skipped)
        dups, tombstones = d[EXACT_DUPLICATE], d[TOMBSTONE]
        return {
            "bronze": sum(d.values()),
            "silver": silver,
            "exact_duplicates": dups,
            "tombstones": tombstones,
            "quarantine": sum(d.values()) - silver - dups - tombstones,
        }

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.sent.items()))
        failed = f"; FAILED {sum(self.failed.values())}" if self.failed else ""
        return f"sent {sum(self.sent.values())} events ({kinds}); delivered {sum(self.delivered.values())}{failed}"

    def to_dict(self) -> dict:
        return {
            "sent": dict(self.sent),
            "delivered": dict(self.delivered),
            "failed": dict(self.failed),
            "total_sent": sum(self.sent.values()),
            "total_delivered": sum(self.delivered.values()),
            "quarantine_reasons": dict(self.reasons),
            "expected": self.expected(),
            "errors": self.errors[:10],
        }


class RecentEvents:
    """The last events a simulator sent, so that it can re-send one as an exact duplicate."""

    def __init__(self, rng: random.Random, keep: int = 500) -> None:
        self.rng, self.keep, self.events = rng, keep, []

    def add(self, event: SimEvent) -> SimEvent:
        self.events.append(event)
        if len(self.events) > self.keep:
            del self.events[: self.keep // 2]
        return event

    def resend(self) -> SimEvent | None:
        """An exact re-send of a recent event (None before any was sent)."""
        if not self.events:
            return None
        e = self.rng.choice(self.events)
        return SimEvent(EXACT_DUPLICATE, e.key, e.value, (), e.headers)


def encode(kind: str, key: str | None, payload: dict, reasons: tuple[str, ...] = ()) -> SimEvent:
    """A JSON event as the simulators send it (compact JSON, the simulator's headers)."""
    value = json.dumps(payload, separators=(",", ":")).encode()
    return SimEvent(kind, None if key is None else key.encode(), value, reasons, JSON_HEADERS)


def iso_utc(t: dt.datetime) -> str:
    """ISO-8601 in UTC with milliseconds and Z, as the contracts' timestamps expect."""
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KafkaSink:
    """An idempotent producer (acks=all) that tallies deliveries per kind in its delivery callback.

    A broker that stops answering is ridden out: librdkafka keeps the events and delivers them when it is back;
    one not acknowledged within the producer's `message.timeout.ms` (librdkafka's default: 5 minutes) fails and is
    counted. `say` (if given) gets one line when the broker stops answering and one when it answers again.
    """

    def __init__(
        self, kafka: KafkaSettings, topic: str, tally: Tally, say: Callable[[str], None] | None = None, **producer_conf: object
    ) -> None:  # fmt: skip
        ensure_topic(kafka, topic)
        conf = client_config(
            kafka,
            **{
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 20,
                "compression.type": "lz4",
                "message.max.bytes": 8 * 1024 * 1024,
                "error_cb": self._on_error,
            },
        )
        conf.update(producer_conf)
        self.timeout_s = float(conf.get("message.timeout.ms", conf.get("delivery.timeout.ms", 300_000))) / 1000
        self.producer = Producer(conf)
        self.topic = topic
        self.tally = tally
        self.servers = kafka.bootstrap_servers
        self.say = say
        self.down_since: float | None = None

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self.down_since is None:
            self.down_since = time.time()
            if self.say:
                since = time.strftime("%H:%M:%S", time.localtime(self.down_since))
                self.say(f"Kafka at {self.servers} has not answered since {since}: the simulator keeps its events and "
                         f"delivers them when it is back (one not acknowledged within {self.timeout_s:g} s fails, "
                         "and is counted)")  # fmt: skip

    def _back(self) -> None:
        if self.down_since is not None:
            if self.say:
                self.say(f"Kafka at {self.servers} answers again (no answer for {time.time() - self.down_since:.0f} s); "
                         "the simulator delivers what it kept")  # fmt: skip
            self.down_since = None

    def send(self, event: SimEvent) -> None:
        def delivered(err: KafkaError | None, _msg: Message, kind: str = event.kind) -> None:
            if err is None:
                self._back()
                self.tally.delivered[kind] += 1
            else:
                self.tally.failed[kind] += 1
                self.tally.errors.append(str(err))

        while True:
            try:
                self.producer.produce(
                    self.topic, key=event.key, value=event.value, headers=list(event.headers), on_delivery=delivered
                )
                break
            except BufferError:  # local queue full: serve deliveries, then retry
                self.producer.poll(0.2)
        self.producer.poll(0)

    def close(self, timeout: float | None = None) -> None:
        """Wait for every event's acknowledgement or failure: at most the producer's message timeout, plus a margin."""
        timeout = self.timeout_s + 10 if timeout is None else timeout
        remaining = self.producer.flush(timeout)
        if remaining:
            self.tally.errors.append(f"{remaining} messages not delivered within {timeout:g}s")


class FileSink:
    """Keeps events as JSON lines (bytes in base64), for `ReplaySource`."""

    def __init__(self, path: Path, tally: Tally) -> None:
        self.file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.tally = tally

    def send(self, event: SimEvent) -> None:
        row = {
            "kind": event.kind,
            "key": _b64(event.key),
            "value": _b64(event.value),
            "reasons": list(event.reasons),
            "headers": [[k, _b64(v)] for k, v in event.headers],
        }
        self.file.write(json.dumps(row) + "\n")
        self.tally.delivered[event.kind] += 1

    def close(self) -> None:
        self.file.close()


class ReplaySource:
    """Replays a file written by FileSink, event for event."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> Iterator[SimEvent]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                yield SimEvent(
                    kind=row["kind"],
                    key=_unb64(row["key"]),
                    value=_unb64(row["value"]),
                    reasons=tuple(row["reasons"]),
                    headers=tuple((k, _unb64(v)) for k, v in row["headers"]),
                )


def publish(
    events: Iterable[SimEvent],
    sink: KafkaSink | FileSink,
    count: int | None = None,
    seconds: float | None = None,
    rate: float | None = None,
    progress: bool = False,
) -> Tally:
    """Send events until `count` are sent or `seconds` have passed, at most `rate` per second."""
    tally = sink.tally
    start = time.monotonic()
    bar = _Progress(count, seconds) if progress and sys.stderr.isatty() else None
    try:
        for i, event in enumerate(events):
            if count is not None and i >= count:
                break
            elapsed = time.monotonic() - start
            if seconds is not None and elapsed >= seconds:
                break
            if rate:
                ahead = i / rate - elapsed
                if ahead > 0:
                    time.sleep(ahead)
            tally.record(event)
            sink.send(event)
            if bar:
                bar.update(i + 1, time.monotonic() - start)
    finally:
        sink.close()
        if bar:
            bar.done()
    return tally


class _Progress:
    def __init__(self, count: int | None, seconds: float | None) -> None:
        self.count, self.seconds, self.last = count, seconds, 0.0

    def update(self, n: int, elapsed: float) -> None:
        if elapsed - self.last < 0.25:
            return
        self.last = elapsed
        frac = n / self.count if self.count else (elapsed / self.seconds if self.seconds else 0)
        bar = "#" * int(30 * min(frac, 1))
        sys.stderr.write(f"\r[{bar:<30}] {n} events, {n / max(elapsed, 1e-9):,.0f}/s")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)
