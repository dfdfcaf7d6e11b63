"""The tables lakepipe knows: every table of every configured pipeline, with its location and row count."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from pipelines.engine.delta_io import is_delta_table
from pipelines.errors import TableNotFoundError
from pipelines.model.project import Project


def list_tables(spark: SparkSession, project: Project) -> list[dict]:
    """name, layer, location, rows (None where the table has not been created yet), keys, partitioning and
    comment of each table."""
    out = []
    for t in project.tables:
        rows = spark.read.format("delta").load(t.path).count() if is_delta_table(spark, t.path) else None
        out.append({"name": t.name, "layer": t.layer, "location": t.path, "rows": rows, "keys": list(t.keys),
                    "partition_by": list(t.partition_by), "comment": t.comment})  # fmt: skip
    return out


def read_table(spark: SparkSession, project: Project, name: str) -> DataFrame:
    t = project.table(name)
    if not is_delta_table(spark, t.path):
        raise TableNotFoundError(f"table '{name}' has not been written yet (expected at {t.path}): run its pipeline")
    return spark.read.format("delta").load(t.path)


def markdown(project: Project) -> str:
    """Every declared table as a Markdown table (the README's table list is this text; no Spark needed)."""
    lines = ["| table | layer | pipeline | key | partitioned by | what it holds |", "|---|---|---|---|---|---|"]
    for t in project.tables:
        keys = ", ".join(t.keys) or "-"
        parts = ", ".join(t.partition_by) or "-"
        pipeline = "every pipeline" if t.pipeline == "*" else t.pipeline
        lines.append(f"| `{t.name}` | {t.layer} | {pipeline} | {keys} | {parts} | {t.comment.replace('|', '/')} |")
    return "\n".join(lines)

