"""Delta table helpers shared by every layer: create, idempotent append, upsert, and checkpoint identity."""

from __future__ import annotations

import json

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T


def ensure_table(
    spark: SparkSession, path: str, schema: T.StructType, partition_by: tuple[str, ...] = ()
) -> None:
    """Create an empty Delta table at `path` with `schema` unless one exists there."""
    builder = DeltaTable.createIfNotExists(spark).location(path).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    builder.execute()


def is_delta_table(spark: SparkSession, path: str) -> bool:
    return DeltaTable.isDeltaTable(spark, path)


def append_once(df: DataFrame, path: str, app_id: str, version: int, merge_schema: bool = False) -> None:
    """Append `df` to the Delta table at `path` exactly once for (app_id, version).

    Delta records the highest version committed per app id in the table's log and skips a write whose
    version is not higher, so a micro-batch that is re-run after a crash does not append twice.
    `merge_schema` lets a table made by an older lakepipe gain the columns added since.
    """
    (
        df.write.format("delta")
        .mode("append")
        .option("txnAppId", app_id)
        .option("txnVersion", version)
        .option("mergeSchema", str(merge_schema).lower())
        .save(path)
    )


def replace_where(df: DataFrame, path: str, predicate: str) -> None:
    """Replace the rows of the table at `path` that match `predicate` by `df`, in one commit.

    Delta checks that every row of `df` matches the predicate, so a rebuild can never write outside the
    key values it replaces.
    """
    df.write.format("delta").mode("overwrite").option("replaceWhere", predicate).save(path)


def upsert(batch: DataFrame, path: str, keys: tuple[str, ...], delete_flag: str | None = None) -> None:
    """MERGE `batch` into the table at `path` by `keys`: update matches, insert the rest.

    With `delete_flag`, rows of `batch` where that column is true delete their match instead (and are
    never inserted); the flag column itself is not stored. Upserting absolute values is idempotent, so a
    re-run micro-batch leaves the same result.
    """
    target = DeltaTable.forPath(batch.sparkSession, path)
    cond = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    columns = [c for c in batch.columns if c != delete_flag]
    values = {f"`{c}`": f"s.`{c}`" for c in columns}
    merge = target.alias("t").merge(batch.alias("s"), cond)
    if delete_flag:
        merge = (
            merge.whenMatchedDelete(condition=f"s.`{delete_flag}`")
            .whenMatchedUpdate(set=values)
            .whenNotMatchedInsert(condition=f"NOT s.`{delete_flag}`", values=values)
        )
    else:
        merge = merge.whenMatchedUpdate(set=values).whenNotMatchedInsert(values=values)
    merge.execute()


def upsert_nonempty(batch: DataFrame, path: str, keys: tuple[str, ...], delete_flag: str | None = None) -> None:
    """`upsert` for a foreachBatch: skips empty batches (a MERGE costs seconds even when empty).

    The batch is persisted so that checking for rows and merging evaluate a stateful plan only once.
    """
    batch = batch.persist()
    try:
        if not batch.isEmpty():
            upsert(batch, path, keys, delete_flag)
    finally:
        batch.unpersist()


def read_text(spark: SparkSession, path: str) -> str:
    """Read a small text file through Hadoop's file system API (works for local, HDFS and object stores)."""
    jvm = spark._jvm  # noqa: SLF001 - Hadoop FS is only reachable through the JVM gateway
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001
    stream = fs.open(hpath)
    try:
        return jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8")
    finally:
        stream.close()


def checkpoint_query_id(spark: SparkSession, checkpoint: str) -> str:
    """The streaming query id stored in a checkpoint: stable across restarts, new for a new checkpoint.

    Used as the Delta `txnAppId` of a query's idempotent writes, so that deleting a checkpoint (which
    restarts batch ids at 0) can never make Delta skip the new writes as already done.
    """
    metadata = read_text(spark, checkpoint.rstrip("/") + "/metadata")
    return json.loads(metadata.splitlines()[0])["id"]
