"""The tables lakepipe knows: every table of every configured pipeline, with its location and row count, and
their names in the catalog.

Each table is registered by name (`CREATE TABLE ... USING DELTA LOCATION ...`, an external table: the catalog
holds only the name and the location, Delta's log the schema and comments) under a schema per layer:
`<prefix>_bronze`, `<prefix>_silver`, `<prefix>_quarantine`, `<prefix>_gold`, `<prefix>_audit`, inside
`catalog.name` when set (three-part names, e.g. Unity Catalog). Registration is idempotent and never moves
data: a name already pointing at the table's location is left alone, one pointing elsewhere (the lake moved)
is pointed again; dropping an external table's name never deletes its files.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame, SparkSession

from pipelines.engine.delta_io import is_delta_table
from pipelines.engine.gold.rebuild import sql_literal
from pipelines.errors import ConfigError, TableNotFoundError
from pipelines.model.config import Settings
from pipelines.model.layout import Table
from pipelines.model.project import Project


def schema_name(settings: Settings, layer: str) -> str:
    """The catalog schema of a layer's tables, with the catalog in front when one is set."""
    c = settings.catalog
    return f"{c.name}.{c.schema_prefix}_{layer}" if c.name else f"{c.schema_prefix}_{layer}"


def qualified_name(settings: Settings, t: Table) -> str:
    return f"{schema_name(settings, t.layer)}.{t.name}"


def register(spark: SparkSession, settings: Settings, tables: Iterable[Table]) -> list[str]:
    """Register every written table of `tables` in the catalog; returns the names registered or pointed again.

    Nothing happens when `catalog.enabled` is false. Tables not written yet are left for a later call.
    """
    if not settings.catalog.enabled:
        return []
    by_schema: dict[str, list[Table]] = {}
    for t in {t.name: t for t in tables}.values():
        if is_delta_table(spark, t.path):
            by_schema.setdefault(schema_name(settings, t.layer), []).append(t)
    done = []
    for schema, wanted in sorted(by_schema.items()):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(schema)} COMMENT 'lakepipe: tables of the {wanted[0].layer} layer'")
        known = _registered(spark, schema)
        for t in wanted:
            name = f"{schema}.{t.name}"
            if t.name in known:
                location, kind = known[t.name]
                if _same_path(location, t.path):
                    continue
                if kind != "EXTERNAL":
                    raise ConfigError(f"catalog table {name} exists as a {kind.lower()} table not made by lakepipe: "
                                      f"set another catalog.schema_prefix in {settings.source}")  # fmt: skip
                spark.sql(f"DROP TABLE {_quoted(name)}")  # an external table: its files stay where they are
            spark.sql(f"CREATE TABLE IF NOT EXISTS {_quoted(name)} USING DELTA LOCATION {sql_literal(t.path)}")
            done.append(name)
    return done


def summary(registered: list[str]) -> str:
    """One line for people: how many tables were registered, under which schemas."""
    return f"catalog: {len(registered)} tables registered ({', '.join(sorted({n.rsplit('.', 1)[0] for n in registered}))})"


def run_sql(spark: SparkSession, project: Project, query: str) -> DataFrame:
    """`query` over the catalog, once every written table of the project is registered (see `register`)."""
    register(spark, project.settings, project.tables)
    return spark.sql(query)


def _registered(spark: SparkSession, schema: str) -> dict[str, tuple[str, str]]:
    """Table name -> (location, type) of every table in `schema`, from the catalog alone (one call)."""
    out = {}
    for row in spark.sql(f"SHOW TABLE EXTENDED IN {_quoted(schema)} LIKE '*'").collect():
        info = dict(line.split(": ", 1) for line in row.information.splitlines() if ": " in line)
        out[row.tableName] = (info.get("Location", ""), info.get("Type", "").strip().upper())
    return out


def _same_path(location: str, path: str) -> bool:
    strip = lambda p: p.strip().removeprefix("file:").rstrip("/").replace("///", "/")  # noqa: E731
    return strip(location) == strip(path)


def _quoted(name: str) -> str:
    return ".".join(f"`{part}`" for part in name.split("."))


def list_tables(spark: SparkSession, project: Project) -> list[dict]:
    """name, layer, name in the catalog, location, rows (None where the table has not been created yet), keys, partitioning and
    comment of each table."""
    out = []
    for t in project.tables:
        rows = spark.read.format("delta").load(t.path).count() if is_delta_table(spark, t.path) else None
        named = qualified_name(project.settings, t) if project.settings.catalog.enabled else None
        out.append({"name": t.name, "layer": t.layer, "catalog_name": named, "location": t.path, "rows": rows,
                    "keys": list(t.keys), "partition_by": list(t.partition_by), "comment": t.comment})  # fmt: skip
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

