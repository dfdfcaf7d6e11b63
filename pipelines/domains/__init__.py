"""The business domains, one folder each, found by looking in this package.

`pipelines/domains/<name>/__init__.py` defines `DOMAIN`: the pipeline it feeds, its simulator with the fault
flags it takes, and its part of the demo. Nothing else lists domains: a new one is a folder here, a spec in
`conf/pipelines/` and a contract and suite in `schemas/<name>/` (the README's "How to add a domain").
"""

from __future__ import annotations

import datetime as dt
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Protocol

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from pipelines.errors import ConfigError
from pipelines.model.config import Settings
from pipelines.simulators.base import EventSource


@dataclass(frozen=True)
class SimulatorOptions:
    """What `lakepipe simulate` passes a domain's simulator."""

    seed: int = 7
    start: dt.datetime | None = None  # simulated time of the first event (None: now)
    events_per_second: float = 20.0  # event-time spacing
    faults: Mapping[str, float] = field(default_factory=dict)  # fault flag -> rate, only the domain's own flags

    def rate(self, flag: str) -> float:
        return self.faults.get(flag, 0.0)


@dataclass(frozen=True)
class DemoRun:
    """What a domain's demo summary may look at once both waves have run."""

    read: Callable[[str], DataFrame]  # table name -> its rows
    say: Callable[[str], None]
    source: EventSource | LiveSource  # what the demo's changes came from (its ground truth, if it keeps one)
    late_rows: Mapping[str, int]  # query name -> rows older than the watermark left out, over both waves

    def quarantine_reasons(self, table: str) -> str:
        """'reason count, ...' of a quarantine table, most frequent first."""
        rows = self.read(table).select(F.explode("reasons").alias("r")).groupBy("r").count()
        return ", ".join(f"{r.r} {r['count']}" for r in rows.orderBy(F.desc("count")).collect())


def _same(n: int) -> int:
    return n


class LiveSource(Protocol):
    """A real system the demo changes (the shop database, which the Debezium connector streams to Kafka)."""

    def wave(self, n: int) -> str: ...  # make n changes, wait until they are in Kafka; one line saying what


@dataclass(frozen=True)
class Demo:
    """A domain's part of `lakepipe demo`: two waves of simulated events (or of changes at a live source, whose
    connector writes the pipeline's topic), then a summary."""

    source: Callable[[int, dt.datetime], EventSource] | None  # (seed, now) -> the generator
    summary: Callable[[DemoRun], dict]  # says what the tables show; returns the figures for tests
    events: Callable[[int], int] = _same  # first-wave events from `--events N` (the second wave sends a third)
    before_wave: Callable[[EventSource, int], None] | None = None  # e.g. other faults in wave 2
    live: Callable[[Settings, int], LiveSource] | None = None  # (settings, seed) -> the live source, instead of `source`


@dataclass(frozen=True)
class Domain:
    pipeline: str  # its spec: conf/pipelines/<pipeline>.yaml
    faults: Mapping[str, str]  # `lakepipe simulate` fault flags it takes (underscored) -> what each injects
    simulator: Callable[[SimulatorOptions], EventSource]
    demo: Demo


@cache
def domains() -> dict[str, Domain]:
    """Every domain package here, by pipeline name."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            d = importlib.import_module(f"{__name__}.{info.name}").DOMAIN
            found[d.pipeline] = d
    return dict(sorted(found.items()))


def domain(pipeline: str) -> Domain:
    if pipeline not in domains():
        raise ConfigError(f"no simulator for pipeline '{pipeline}' (simulators: {', '.join(domains())})")
    return domains()[pipeline]


def fault_flags() -> dict[str, tuple[str, list[str]]]:
    """Every fault flag of every domain -> (what it injects, the domains that take it), first-seen order."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, d in domains().items():
        for flag, text in d.faults.items():
            out.setdefault(flag, (text, []))[1].append(name)
    return out
