"""Table upkeep: compact the small files that streaming writes (one or more per micro-batch per table), and
delete the files no version within the retention period needs any more.

A stream that commits every few seconds leaves thousands of small files, which slows every reader. OPTIMIZE
rewrites them into few large ones in one commit; readers and running streams are not disturbed (the files
it replaces stay until VACUUM removes them after the retention period). VACUUM deletes files that no version
younger than the retention references: a stream whose checkpoint still points at an older version, or a reader
of one, would fail on a missing file, so a retention below Delta's safety default (7 days) is refused unless
forced (and is safe only when every stream reading the table has caught up).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from pipelines.engine.delta_io import is_delta_table
from pipelines.errors import LakepipeError
from pipelines.model.layout import Table
from pipelines.platform.session import session_conf


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


def expire(spark: SparkSession, table: Table, column: str, retention_s: float, attempts: int = 3) -> None:
    """Delete the rows of `table` whose timestamp `column` is older than the retention (a commit only when there are
    some). Streams append to these tables meanwhile: a DELETE that loses to one of their commits is tried again."""
    from delta.exceptions import ConcurrentAppendException

    cutoff = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(seconds=retention_s)
    old = f"`{column}` < TIMESTAMP'{cutoff.isoformat(sep=' ')}'"
    if spark.read.format("delta").load(table.path).where(old).limit(1).count() == 0:
        return  # files pruned by their statistics: ~1 s, where a DELETE finding nothing takes ~8 s on a fresh JVM
    for attempt in range(attempts):
        try:
            DeltaTable.forPath(spark, table.path).delete(old)
            return
        except ConcurrentAppendException:
            if attempt == attempts - 1:
                raise


SAFE_RETENTION_HOURS = 168.0  # Delta's default `deletedFileRetentionDuration` (7 days) and its safety check
# Spark's default of 10,000 listing tasks made each VACUUM of a small table take 30-50 s on 2 cores.
LISTING_TASKS = 16


@dataclass(frozen=True)
class Vacuum:
    table: str
    files_deleted: int


def check_retention(retention_hours: float, force: bool) -> None:
    """Refuse a VACUUM retention below the safety limit unless forced (one line saying why and what to do)."""
    if retention_hours < SAFE_RETENTION_HOURS and not force:
        raise LakepipeError(f"a VACUUM retention of {retention_hours:g} hours is below Delta's safety limit of "
                            f"{SAFE_RETENTION_HOURS:g}: a stream or reader still on an older version would fail on "
                            "missing files; use the default, or add --force once every stream reading these tables "
                            "has caught up")  # fmt: skip


def vacuum(spark: SparkSession, tables: list[Table], retention_hours: float = SAFE_RETENTION_HOURS,
           force: bool = False) -> list[Vacuum]:  # fmt: skip
    """VACUUM every table of `tables` that exists, keeping the files of the last `retention_hours`; how many
    files each lost. Below the safety default only with `force`."""
    check_retention(retention_hours, force)
    check = "spark.databricks.delta.retentionDurationCheck.enabled"
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"  # VACUUM lists files in this many tasks
    with (
        session_conf(spark, listing, str(LISTING_TASKS)),
        session_conf(spark, check, "false" if force else spark.conf.get(check, "true")),
    ):
        out = []
        for t in tables:
            if not is_delta_table(spark, t.path):
                continue
            sql = f"VACUUM delta.`{t.path}` RETAIN {retention_hours:g} HOURS"
            doomed = spark.sql(sql + " DRY RUN").count()
            if doomed:
                spark.sql(sql).collect()
            out.append(Vacuum(t.name, doomed))
        return out
