"""Helpers shared by the end-to-end tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from pyspark.sql import DataFrame, SparkSession

from pipelines.engine import runner
from pipelines.model.config import Settings
from pipelines.model.project import Pipeline, load_project
from pipelines.simulators.base import EXACT_DUPLICATE, KafkaSink, SimEvent, Tally, publish


def run_once(spark: SparkSession, settings: Settings, names: Sequence[str]) -> runner.RunResult:
    """`lakepipe run NAMES --once` in this session."""
    return runner.run(spark, load_project(settings, list(names)), list(names), once=True)


def pipeline(settings: Settings, name: str) -> Pipeline:
    return load_project(settings, [name]).pipeline(name)


def send(settings: Settings, events: Iterable[SimEvent], name: str = "clickstream") -> Tally:
    """Publish `events` to pipeline `name`'s topic; every one must be delivered."""
    tally = publish(iter(events), KafkaSink(settings.kafka, pipeline(settings, name).topic, Tally()))
    assert not tally.failed, tally.errors
    return tally


def table(spark: SparkSession, p: Pipeline, name: str) -> DataFrame:
    """The rows of table `name` of pipeline `p`."""
    return spark.read.format("delta").load(p.layout.table(name).path)


def reaching_silver(events: Iterable[SimEvent]) -> list[dict]:
    """The payloads silver must hold: every event with no quarantine reason, exact re-sends left out."""
    return [json.loads(e.value) for e in events if not e.reasons and e.kind != EXACT_DUPLICATE]
