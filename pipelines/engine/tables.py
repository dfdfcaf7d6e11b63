"""Create a pipeline's tables, empty, from their declarations (`pipelines.model.layout`).

Each table's schema comes from where it is defined: bronze's from the engine, silver's and quarantine's
from the contract, the audit and quality tables' from their writers, a derived table's from its function
applied to the silver stream (so a spec change shows in a new table without any schema written twice).
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql.types import StructField, StructType

from pipelines.engine.bronze import BRONZE_SCHEMA
from pipelines.engine.dedup import DEDUP_HASH, DEDUP_HASH_PROPERTY
from pipelines.engine.delta_io import ensure_table
from pipelines.engine.silver import BATCHES_SCHEMA, quarantine_schema, silver_schema
from pipelines.model.layout import Table
from pipelines.model.project import Pipeline, Project
from pipelines.model.spec import FilesSpec, OutputSpec
from pipelines.quality.results import QUALITY_SCHEMA


def create_tables(spark: SparkSession, project: Project, p: Pipeline, _done: set[str] | None = None) -> set[str]:
    """Create every table of `p` (empty) so that streams, queries and `lakepipe tables` can start at once; the
    paths of the tables this call created.

    Pipelines whose tables `p`'s outputs read are created first.
    """
    done = set() if _done is None else _done
    done.add(p.name)
    created = set()
    for other in sorted(p.source_pipelines() - done):
        created |= create_tables(spark, project, project.pipeline(other), done)
    return created | create_pipeline_tables(spark, p)


def create_pipeline_tables(spark: SparkSession, p: Pipeline) -> set[str]:
    """Create the tables of `p` alone (the tables its outputs read must exist); the paths of those it created."""
    layout = p.layout
    files = p.spec.files
    created = set()

    def make(t: Table, schema: StructType, own: dict[str, str] | None = None) -> None:  # with the spec's file properties
        wanted = {**files.properties(t.name, t.layer), **(own or {})} if t.pipeline == p.name else {}
        if ensure_table(spark, t.path, schema, t.partition_by, t.comment, wanted):
            created.add(t.path)

    make(layout.bronze, BRONZE_SCHEMA, plain_columns("value", "offset"))
    silver = with_comments(silver_schema(p.contract), {f.name: f.description for f in p.contract.fields})
    plain = ("payload_hash", DEDUP_HASH, "offset", *(p.spec.dedup_keys if len(p.spec.dedup_keys) == 1 else ()))
    hashed = {DEDUP_HASH_PROPERTY: ",".join(p.spec.dedup_keys)}  # every row of a new silver has DEDUP_HASH
    make(layout.silver, silver, {STATS_COLUMNS: ",".join(p.silver_stats_columns()), **plain_columns(*plain), **hashed})
    make(layout.quarantine, quarantine_schema(p.contract, p.spec), plain_columns("value", "offset"))
    make(layout.batches, BATCHES_SCHEMA)
    make(layout.quality, QUALITY_SCHEMA)
    for o in p.spec.outputs:  # in spec order: a rebuild may look up an output listed before it
        make(layout.output(o.name), output_schema(spark, p, o))
    return created


# A new silver table keeps per-file statistics (min, max, nulls) only of the columns that lakepipe's reads filter on
# (`Pipeline.silver_stats_columns`); an existing table keeps what it has, and a user's ALTER TABLE is left alone.
STATS_COLUMNS = "delta.dataSkippingStatsColumns"


def plain_columns(*columns: str) -> dict[str, str]:
    """Table properties that have Parquet write `columns` without a dictionary. For a column whose every value is new
    (a record's raw value, its Kafka offset, its payload hash, silver's dedup key when it is one field) Parquet builds
    a dictionary of each file's values, finds it no smaller and writes them plain anyway: the dictionary was work for
    nothing (bronze's write of 50,000 records -14% CPU, files no larger). Delta hands a table's properties to the
    Parquet writer as its Hadoop configuration, so every engine's writes, compactions included, follow them. New
    tables get them; an existing one keeps what it has."""
    return {f"parquet.enable.dictionary#{c}": "false" for c in columns}


def apply_file_properties(spark: SparkSession, p: Pipeline, just_created: set[str] = frozenset()) -> list[str]:
    """Give each table of `p` the small-file properties its spec's `files` asks for, and take them off the others
    (one metadata commit per table that changes; none when nothing does). Call before the pipeline's queries
    start: a metadata commit would fail a stream writing the table at that moment. Returns what changed.
    `just_created`: paths of tables created with the spec's properties a moment ago (not read again: ~1.5 s each)."""
    changed = []
    for t in p.layout.tables:
        if t.pipeline != p.name or t.path in just_created:
            continue  # (the shared quality table: no one pipeline's spec decides for it)
        wanted = p.spec.files.properties(t.name, t.layer)
        current = DeltaTable.forPath(spark, t.path).detail().first().properties or {}
        to_set = {k: v for k, v in wanted.items() if current.get(k) != v}
        to_unset = [k for k in FilesSpec.PROPERTIES.values() if k in current and k not in wanted]
        where = f"delta.`{t.path}`"
        if to_set:
            spark.sql(f"ALTER TABLE {where} SET TBLPROPERTIES ({', '.join(f'{k!r} = {v!r}' for k, v in to_set.items())})")
        if to_unset:
            spark.sql(f"ALTER TABLE {where} UNSET TBLPROPERTIES ({', '.join(repr(k) for k in to_unset)})")
        changed += [f"{t.name}: {k}={v}" for k, v in to_set.items()] + [f"{t.name}: {k} off" for k in to_unset]
    return changed


def with_comments(schema: StructType, comments: dict[str, str]) -> StructType:
    """`schema` with a column comment (the catalog shows it) on each field that has a non-empty text in `comments`."""
    return StructType([
        StructField(f.name, f.dataType, f.nullable, {**f.metadata, "comment": comments[f.name]}) if comments.get(f.name) else f
        for f in schema.fields
    ])  # fmt: skip


def create(spark: SparkSession, t: Table, schema: StructType) -> None:
    ensure_table(spark, t.path, schema, t.partition_by, t.comment)


def output_schema(spark: SparkSession, p: Pipeline, o: OutputSpec) -> StructType:
    """The columns output `o` writes: its function's rows over silver, less its delete flag."""
    if o.rebuild:
        rows = spark.read.format("delta").load(p.source_layout(o).silver.path)
        lookups = {arg: spark.read.format("delta").load(path) for arg, path in p.lookup_paths(o).items()}
        schema = p.functions[o.name](rows, **lookups, **o.options).schema
    else:
        schema = p.output_rows(o, spark.readStream.format("delta").load(p.layout.silver.path)).schema
    return StructType([f for f in schema.fields if f.name != o.delete_flag])
