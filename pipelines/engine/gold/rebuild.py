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
from collections.abc import Callable, Mapping

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

    def rebuild(self, spark: SparkSession, values: list) -> None:
        """Recompute the table's rows for these key values (nulls ignored) from the source's current rows."""
        values = sorted({v for v in values if v is not None})
        if not values:
            return
        rows = spark.read.format("delta").load(self.source_path).where(F.col(self.key).isin(values))
        lookups = {arg: spark.read.format("delta").load(p) for arg, p in self.lookups.items()}
        out = self.function(rows, **lookups, **self.options)
        replace_where(out, self.path, key_predicate(self.key, values))
