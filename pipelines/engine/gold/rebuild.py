"""Rebuild-by-key outputs: tables recomputed, key value by key value, from all the silver rows of that value.

Used where the result depends on the order of the source rather than on arrival (SCD history ordered by
the source position) or on other tables (revenue joined to the customer's tier at purchase time). Each
micro-batch names the key values it touches; all silver rows with those values are read back, passed to the
output's pure function, and the table's rows for those values are replaced in one Delta commit
(`replaceWhere`). Recomputing from silver is idempotent, so a re-run or replayed batch changes nothing, and
a late or duplicated row gives the same result as if it had come in order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines.engine.delta_io import replace_where


def sql_literal(value: object) -> str:
    """A Spark SQL literal for a key value (text, whole number, date or timestamp)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP'{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE'{value.isoformat()}'"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"rebuild keys must be text, whole numbers, dates or timestamps, not {type(value).__name__}")


def key_predicate(column: str, values: list) -> str:
    return f"`{column}` IN ({', '.join(sql_literal(v) for v in values)})"


class RebuildWriter:
    """The foreachBatch function of a rebuild output."""

    def __init__(
        self,
        function: Callable[..., DataFrame],
        key: str,
        source_path: str,
        path: str,
        lookups: Mapping[str, str],
        options: Mapping[str, str],
    ) -> None:
        self.function, self.key, self.source_path, self.path = function, key, source_path, path
        self.lookups, self.options = dict(lookups), dict(options)

    def __call__(self, batch: DataFrame, _batch_id: int) -> None:
        self.rebuild(batch.sparkSession, [r[0] for r in batch.select(self.key).distinct().collect()])

    def rebuild(self, spark: SparkSession, values: list, rows: DataFrame | None = None) -> None:
        """Recompute the table's rows for these key values (nulls ignored) from the source's current rows
        (`rows`: those rows already read, e.g. by `rebuild_all` for several outputs of one source and key)."""
        values = key_values(values)
        if not values:
            return
        predicate = key_predicate(self.key, values)
        if rows is None:
            rows = source_rows(spark, self.source_path, predicate)
        lookups = {arg: spark.read.format("delta").load(p) for arg, p in self.lookups.items()}
        out = self.function(rows, **lookups, **self.options)
        replace_where(out, self.path, predicate)


def key_values(values: list) -> list:
    return sorted({v for v in values if v is not None})


def source_rows(spark: SparkSession, path: str, predicate: str) -> DataFrame:
    """The rows of the Delta table at `path` matching `predicate`. One SQL expression: `Column.isin` with a
    thousand values makes a thousand calls into the JVM (~0.5 s, on every micro-batch)."""
    return spark.read.format("delta").load(path).where(F.expr(predicate))


def rebuild_all(spark: SparkSession, writers: Sequence[RebuildWriter], values: Mapping[str, list],
                pool: Executor | None = None) -> None:  # fmt: skip
    """Run `writers` for the key values `values[writer.key]`, side by side in `pool` if given. Writers of the same
    source and key share one read of its rows (kept in memory while they run) instead of scanning it each."""
    groups: dict[tuple[str, str], list[RebuildWriter]] = {}
    for w in writers:
        groups.setdefault((w.source_path, w.key), []).append(w)
    shared = []
    calls = []
    for (source, key), members in groups.items():
        keys = key_values(values[key])
        rows = None
        if len(members) > 1 and keys:
            rows = source_rows(spark, source, key_predicate(key, keys)).persist(StorageLevel.MEMORY_AND_DISK_DESER)
            shared.append(rows)
        calls += [lambda w=w, keys=keys, rows=rows: w.rebuild(spark, keys, rows) for w in members]
    try:
        if pool is None:
            for call in calls:
                call()
            return
        done = [pool.submit(call) for call in calls]
        for d in done:
            d.exception()  # all have ended before the shared rows are dropped
        for d in done:
            d.result()
    finally:
        for rows in shared:
            rows.unpersist()
