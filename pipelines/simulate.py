"""`lakepipe simulate`: build a source (generator or replay) and a sink (Kafka, plus a file) and publish."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from pipelines.domains import SimulatorOptions, domain, fault_flags
from pipelines.errors import ConfigError
from pipelines.model.project import Project
from pipelines.simulators.base import EventSource, FileSink, KafkaSink, ReplaySource, SimEvent, Tally, publish


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


def source(args: argparse.Namespace) -> EventSource:
    if args.replay:
        return ReplaySource(Path(args.replay))
    d = domain(args.pipeline)
    for flag in fault_flags():
        if getattr(args, flag, 0) and flag not in d.faults:
            usable = ", ".join(f"--{f.replace('_', '-')}" for f in d.faults)
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to the {args.pipeline} simulator (it takes {usable})")
    start = dt.datetime.fromisoformat(args.start) if args.start else None
    faults = {flag: getattr(args, flag, 0.0) for flag in d.faults}
    return d.simulator(SimulatorOptions(args.seed, start, args.events_per_second, faults))


def _say(line: str) -> None:
    print(("\n" if sys.stderr.isatty() else "") + line, file=sys.stderr, flush=True)  # after the progress bar's line


def simulate(project: Project, args: argparse.Namespace) -> Tally:
    topic = args.topic or project.topic(args.pipeline)
    tally = Tally()
    sink = KafkaSink(project.settings.kafka, topic, tally, say=_say)
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
