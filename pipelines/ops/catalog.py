"""The tables lakepipe knows: every table of every configured pipeline, with its location and row count."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession

from pipelines.model.config import Settings
from pipelines.engine.delta_io import is_delta_table
from pipelines.errors import TableNotFoundError
from pipelines.model.layout import Table
from pipelines.engine.runner import load_pipeline


def known_tables(settings: Settings) -> list[Table]:
    tables = {t.name: t for name in settings.pipeline_names() for t in load_pipeline(settings, name).layout.tables}
    return list(tables.values())


def list_tables(spark: SparkSession, settings: Settings) -> list[dict]:
    """name, layer, location and rows (None where the table has not been created yet) of each table."""
    out = []
    for t in known_tables(settings):
        rows = spark.read.format("delta").load(t.path).count() if is_delta_table(spark, t.path) else None
        out.append({"name": t.name, "layer": t.layer, "location": t.path, "rows": rows})
    return out


def read_table(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    tables = {t.name: t for t in known_tables(settings)}
    if name not in tables:
        raise TableNotFoundError(f"no table '{name}': `lakepipe tables` lists them ({', '.join(sorted(tables))})")
    t = tables[name]
    if not is_delta_table(spark, t.path):
        raise TableNotFoundError(f"table '{name}' has not been written yet (expected at {t.path}): run its pipeline")
    return spark.read.format("delta").load(t.path)
