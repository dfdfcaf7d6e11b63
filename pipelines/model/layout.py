"""Where each table and checkpoint of a pipeline lives under the lake root."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.model.config import Settings


@dataclass(frozen=True)
class Table:
    name: str
    layer: str
    pipeline: str
    path: str


@dataclass(frozen=True)
class PipelineLayout:
    """The tables of one pipeline. Bronze, silver and quarantine are named after the pipeline's events."""

    pipeline: str
    bronze: Table
    silver: Table
    quarantine: Table
    batches: Table
    gold: tuple[Table, ...]
    checkpoints: str
    quality: Table  # shared by every pipeline of the environment

    @property
    def tables(self) -> tuple[Table, ...]:
        return (self.bronze, self.silver, self.quarantine, *self.gold, self.batches, self.quality)

    def checkpoint(self, query: str) -> str:
        return f"{self.checkpoints}/{query}"

    def gold_table(self, name: str) -> Table:
        for t in self.gold:
            if t.name == name:
                return t
        raise KeyError(name)

    def table(self, name: str) -> Table | None:
        """Any table of the pipeline by name, or None."""
        return next((t for t in self.tables if t.name == name), None)


def pipeline_layout(
    settings: Settings, pipeline: str, events: str, gold: tuple[tuple[str, str], ...]
) -> PipelineLayout:
    """`gold` lists (table name, layer) of the derived tables, in spec order."""
    def table(name: str, layer: str) -> Table:
        return Table(name, layer, pipeline, f"{settings.tables_root}/{layer}/{name}")

    return PipelineLayout(
        pipeline=pipeline,
        bronze=table(f"{events}_raw", "bronze"),
        silver=table(events, "silver"),
        quarantine=table(f"{events}_quarantine", "quarantine"),
        batches=table(f"{pipeline}_silver_batches", "audit"),
        gold=tuple(table(name, layer) for name, layer in gold),
        checkpoints=f"{settings.checkpoints_root}/{pipeline}",
        quality=Table("quality_results", "audit", "*", f"{settings.tables_root}/audit/quality_results"),
    )
