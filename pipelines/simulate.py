"""`lakepipe simulate`: build a source (generator or replay) and a sink (Kafka, plus a file) and publish."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from pipelines.config import Settings
from pipelines.errors import ConfigError
from pipelines.runner import topic_of
from pipelines.simulators.base import EventSource, FileSink, KafkaSink, ReplaySource, SimEvent, Tally, publish
from pipelines.simulators.clickstream import ClickstreamGenerator, FaultRates


class _Tee:
    """Send to Kafka and keep a copy in a file."""

    def __init__(self, kafka: KafkaSink, file: FileSink) -> None:
        self.kafka, self.file, self.tally = kafka, file, kafka.tally
        self._copy = Tally()
        file.tally = self._copy

    def send(self, event: SimEvent) -> None:
        self.kafka.send(event)
        self.file.send(event)

    def close(self) -> None:
        self.file.close()
        self.kafka.close()


SIMULATORS = ("clickstream",)


def source(args: argparse.Namespace) -> EventSource:
    if args.replay:
        return ReplaySource(Path(args.replay))
    if args.pipeline not in SIMULATORS:
        raise ConfigError(f"no simulator for pipeline '{args.pipeline}' (simulators: {', '.join(SIMULATORS)})")
    start = dt.datetime.fromisoformat(args.start) if args.start else None
    faults = FaultRates(
        exact_duplicate=args.duplicates, conflicting_duplicate=args.conflicts,
        malformed=args.malformed, late=args.late, out_of_order=args.out_of_order,
    )  # fmt: skip
    return ClickstreamGenerator(
        seed=args.seed, start=start, events_per_second=args.events_per_second, faults=faults
    )


def simulate(settings: Settings, args: argparse.Namespace) -> Tally:
    topic = args.topic or topic_of(settings, args.pipeline)
    tally = Tally()
    sink = KafkaSink(settings.kafka, topic, tally)
    if args.out:
        sink = _Tee(sink, FileSink(Path(args.out), Tally()))
    count = args.events if args.events is not None else (None if args.seconds else 1000)
    if args.replay and args.events is None:
        count = None
    return publish(
        source(args).events(), sink, count=count, seconds=args.seconds, rate=args.rate, progress=not args.no_progress
    )
