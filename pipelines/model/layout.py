"""Every table of a pipeline, declared once: name, layer, location, keys, partitioning and what it holds.

Creation (`pipelines.engine.tables`), `lakepipe tables`, compaction and the README's table list all read
these declarations; the schemas come from the contract (silver, quarantine), the engine (bronze, audit,
quality) or the output's function (derived tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.model.config import Settings
from pipelines.model.spec import PipelineSpec

KAFKA_POSITION = ("topic", "partition", "offset")


@dataclass(frozen=True)
class Table:
    name: str
    layer: str  # bronze, silver, quarantine, gold or audit
    pipeline: str  # "*" for the quality table every pipeline shares
    path: str
    keys: tuple[str, ...] = ()  # the columns that identify a row
    partition_by: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True)
class PipelineLayout:
    """The tables of one pipeline. Bronze, silver and quarantine are named after the pipeline's events."""

    pipeline: str
    bronze: Table
    silver: Table
    quarantine: Table
    batches: Table
    outputs: tuple[Table, ...]  # in spec order
    checkpoints: str
    quality: Table  # shared by every pipeline of the environment

    @property
    def tables(self) -> tuple[Table, ...]:
        return (self.bronze, self.silver, self.quarantine, *self.outputs, self.batches, self.quality)

    def checkpoint(self, query: str) -> str:
        return f"{self.checkpoints}/{query}"

    def output(self, name: str) -> Table:
        for t in self.outputs:
            if t.name == name:
                return t
        raise KeyError(name)

    def table(self, name: str) -> Table | None:
        """Any table of the pipeline by name, or None."""
        return next((t for t in self.tables if t.name == name), None)


def quality_table(settings: Settings) -> Table:
    return Table("quality_results", "audit", "*", f"{settings.tables_root}/audit/quality_results",
                 ("table", "expectation", "query_id", "batch_id"),
                 comment="One row per expectation per checked micro-batch of every silver table.")  # fmt: skip


def backfills_table(settings: Settings) -> Table:
    return Table("backfills", "audit", "*", f"{settings.tables_root}/audit/backfills", ("backfill_id", "started"),
                 comment="One row per backfill run: its id, pipeline, layer, table, range, rows read and written, status.")  # fmt: skip


def events_table(settings: Settings) -> Table:
    return Table("pipeline_events", "audit", "*", f"{settings.tables_root}/audit/pipeline_events",
                 ("query_id", "run_id", "event_time"), ("event_date",),
                 "The event log: one row per micro-batch of every query, and per query start, stop and failure.")  # fmt: skip


def pipeline_layout(settings: Settings, spec: PipelineSpec) -> PipelineLayout:
    def table(name: str, layer: str, keys: tuple[str, ...], comment: str, partition_by: tuple[str, ...] = ()) -> Table:
        return Table(name, layer, spec.name, f"{settings.tables_root}/{layer}/{name}", keys, partition_by, comment)

    events = spec.events_table
    return PipelineLayout(
        pipeline=spec.name,
        bronze=table(f"{events}_raw", "bronze", KAFKA_POSITION,
                     f"Every record of topic {spec.topic} exactly once: key, value and headers as bytes, Kafka metadata."),
        silver=table(events, "silver", spec.dedup_keys,
                     f"The records of {events}_raw that pass contract {spec.contract}, one per {', '.join(spec.dedup_keys)} "
                     f"among events within {spec.dedup_horizon} of each other; typed fields, extra, Kafka position.",
                     spec.partition_by),
        quarantine=table(f"{events}_quarantine", "quarantine", KAFKA_POSITION,
                         f"The records of {events}_raw that silver rejected, with every reason; replayable."),
        batches=table(f"{spec.name}_silver_batches", "audit", ("query_id", "batch_id"),
                      f"One row per silver micro-batch of {spec.name}: records in and where each went."),
        outputs=tuple(table(o.name, o.layer, o.keys, o.description) for o in spec.outputs),
        checkpoints=f"{settings.checkpoints_root}/{spec.name}",
        quality=quality_table(settings),
    )  # fmt: skip
