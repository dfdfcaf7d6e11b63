"""Table upkeep: compact the small files that streaming writes (one or more per micro-batch per table).

A stream that commits every few seconds leaves thousands of small files, which slows every reader. OPTIMIZE
rewrites them into few large ones in one commit; readers and running streams are not disturbed (the files
it replaces stay until VACUUM removes them after the retention period).
"""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from pipelines.engine.delta_io import is_delta_table
from pipelines.model.layout import Table


@dataclass(frozen=True)
class Compaction:
    table: str
    files_before: int
    files_after: int
    bytes_after: int


def file_count(spark: SparkSession, path: str) -> tuple[int, int]:
    """(number of data files, total bytes) of the table's current version."""
    detail = DeltaTable.forPath(spark, path).detail().select("numFiles", "sizeInBytes").first()
    return int(detail["numFiles"]), int(detail["sizeInBytes"])


def compact(spark: SparkSession, tables: list[Table]) -> list[Compaction]:
    """OPTIMIZE every table of `tables` that exists; what each held before and after."""
    out = []
    for t in tables:
        if not is_delta_table(spark, t.path):
            continue
        before, _ = file_count(spark, t.path)
        if before > 1:
            DeltaTable.forPath(spark, t.path).optimize().executeCompaction()
        after, size = file_count(spark, t.path)
        out.append(Compaction(t.name, before, after, size))
    return out
