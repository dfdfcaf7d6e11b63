"""`lakepipe simulate`: build a source (generator or replay) and a sink (Kafka, plus a file) and publish."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from pipelines.model.config import Settings
from pipelines.errors import ConfigError
from pipelines.engine.runner import topic_of
from pipelines.simulators.base import EventSource, FileSink, KafkaSink, ReplaySource, SimEvent, Tally, publish
from pipelines.domains.customers.simulator import CdcFaults, CdcGenerator
from pipelines.domains.clickstream.simulator import ClickstreamGenerator, FaultRates
from pipelines.domains.iot.simulator import IotFaults, IotGenerator
from pipelines.domains.payments.simulator import PaymentFaults, PaymentsGenerator


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


FAULT_FLAGS = ("duplicates", "conflicts", "malformed", "late", "out_of_order", "anomalies", "stuck", "dropouts", "fraud")


def _clickstream(args: argparse.Namespace, start: dt.datetime | None) -> EventSource:
    faults = FaultRates(
        exact_duplicate=args.duplicates, conflicting_duplicate=args.conflicts,
        malformed=args.malformed, late=args.late, out_of_order=args.out_of_order,
    )  # fmt: skip
    return ClickstreamGenerator(seed=args.seed, start=start, events_per_second=args.events_per_second, faults=faults)


def _iot(args: argparse.Namespace, start: dt.datetime | None) -> EventSource:
    faults = IotFaults(
        exact_duplicate=args.duplicates, malformed=args.malformed, late=args.late,
        spike=args.anomalies, stuck=args.stuck, dropout=args.dropouts,
    )  # fmt: skip
    return IotGenerator(seed=args.seed, start=start, faults=faults)


def _payments(args: argparse.Namespace, start: dt.datetime | None) -> EventSource:
    faults = PaymentFaults(exact_duplicate=args.duplicates, malformed=args.malformed, fraud=args.fraud)
    return PaymentsGenerator(seed=args.seed, start=start, faults=faults)


def _customers(args: argparse.Namespace, start: dt.datetime | None) -> EventSource:
    faults = CdcFaults(exact_duplicate=args.duplicates, out_of_order=args.out_of_order, malformed=args.malformed)
    return CdcGenerator(seed=args.seed, start=start, faults=faults)


# pipeline -> (simulator factory, the fault flags it understands)
SIMULATORS: dict[str, tuple[Callable[[argparse.Namespace, dt.datetime | None], EventSource], tuple[str, ...]]] = {
    "clickstream": (_clickstream, ("duplicates", "conflicts", "malformed", "late", "out_of_order")),
    "iot": (_iot, ("duplicates", "malformed", "late", "anomalies", "stuck", "dropouts")),
    "payments": (_payments, ("duplicates", "malformed", "fraud")),
    "customers": (_customers, ("duplicates", "malformed", "out_of_order")),
}


def source(args: argparse.Namespace) -> EventSource:
    if args.replay:
        return ReplaySource(Path(args.replay))
    if args.pipeline not in SIMULATORS:
        raise ConfigError(f"no simulator for pipeline '{args.pipeline}' (simulators: {', '.join(SIMULATORS)})")
    factory, flags = SIMULATORS[args.pipeline]
    for flag in FAULT_FLAGS:
        if getattr(args, flag, 0) and flag not in flags:
            usable = ", ".join(f"--{f.replace('_', '-')}" for f in flags)
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to the {args.pipeline} simulator (it takes {usable})")
    start = dt.datetime.fromisoformat(args.start) if args.start else None
    return factory(args, start)


def simulate(settings: Settings, args: argparse.Namespace) -> Tally:
    topic = args.topic or topic_of(settings, args.pipeline)
    tally = Tally()
    sink = KafkaSink(settings.kafka, topic, tally)
    if args.out:
        sink = _Tee(sink, FileSink(Path(args.out), Tally()))
    count = args.events if args.events is not None else (None if args.seconds else 1000)
    if args.replay and args.events is None:
        count = None
    events = source(args)
    tally = publish(
        events.events(), sink, count=count, seconds=args.seconds, rate=args.rate, progress=not args.no_progress
    )
    if args.truth:
        truth = getattr(events, "ground_truth", None)
        if truth is None:
            raise ConfigError(f"--truth: the {args.pipeline} simulator keeps no ground truth (iot and payments do)")
        Path(args.truth).write_text(json.dumps(truth(), indent=2), encoding="utf-8")
    return tally
